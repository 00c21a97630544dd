"""Allegro coverage case."""

import torch
from diffusers.models.embeddings import get_3d_rotary_pos_embed_allegro

from .base import Case, randn, timestep


def _allegro_inputs(model, g, frames=3, height=8, width=8, text=5):
    cfg = model.config
    grid = (height // cfg.patch_size, width // cfg.patch_size)
    # The pipeline's `_prepare_rotary_positional_embeddings`: frequency tables, then `[1, S]` position ids per axis.
    *tables, grid_t, grid_h, grid_w = get_3d_rotary_pos_embed_allegro(
        cfg.attention_head_dim, ((0, 0), grid), grid, frames,
        (cfg.interpolation_scale_t, cfg.interpolation_scale_h, cfg.interpolation_scale_w),
    )  # fmt: skip
    ids = torch.cartesian_prod(grid_t.long(), grid_h.long(), grid_w.long()).reshape(-1, 3).T.reshape(3, 1, -1)
    return {
        "hidden_states": randn(g, 1, cfg.in_channels, frames, height, width),
        "encoder_hidden_states": randn(g, 1, text, cfg.caption_channels),
        "encoder_attention_mask": torch.tensor([[1, 1, 1, 0, 0]]),
        "timestep": timestep(g),
        "image_rotary_emb": (tuple(tables), tuple(ids)),
    }


CASES = {
    # 3 frames of 4x4 patches: 48 tokens; caption padding masked in the cross-attention.
    "AllegroTransformer3DModel": Case(
        config=dict(
            patch_size=2,
            patch_size_t=1,
            num_attention_heads=2,
            attention_head_dim=12,
            in_channels=4,
            out_channels=4,
            num_layers=2,
            cross_attention_dim=24,
            sample_height=8,
            sample_width=8,
            sample_frames=3,
            caption_channels=16,
        ),
        inputs=_allegro_inputs,
    ),
}
UNSUPPORTED: dict[str, str] = {}
