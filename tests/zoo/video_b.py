"""Video coverage cases: Allegro, EasyAnimate, the UNet temporal transformer, and the video models without a plan."""

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


def _easyanimate_inputs(model, g, frames=3, height=8, width=8, text=10):
    cfg = model.config
    return {
        "hidden_states": randn(g, 1, cfg.in_channels, frames, height, width),
        "timestep": timestep(g),
        "encoder_hidden_states": randn(g, 1, text, cfg.text_embed_dim),  # 10: split over 2 ranks, replicated over 3, 4
    }


def _temporal_inputs(model, g, batch=2, frames=3, height=2, width=3):
    return {
        "hidden_states": randn(g, batch * frames, model.config.in_channels, height, width),  # 12 pixel rows
        "num_frames": frames,
    }


CASES = {
    # 3 frames of 4x4 patches: 48 tokens; caption padding masked in the cross-attention.
    "AllegroTransformer3DModel": Case(
        config=dict(patch_size=2, patch_size_t=1, num_attention_heads=2, attention_head_dim=12, in_channels=4,
                    out_channels=4, num_layers=2, cross_attention_dim=24, sample_height=8, sample_width=8,
                    sample_frames=3, caption_channels=16),
        inputs=_allegro_inputs,
    ),
    # One MMDiT block (own text projections) and one shared-projection block; 3 frames of 4x4 patches: 48 tokens.
    "EasyAnimateTransformer3DModel": Case(
        config=dict(num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4, patch_size=2,
                    sample_width=8, sample_height=8, num_layers=2, mmdit_layers=1, time_embed_dim=16,
                    text_embed_dim=16),
        inputs=_easyanimate_inputs,
    ),
    "TransformerTemporalModel": Case(
        config=dict(num_attention_heads=2, attention_head_dim=8, in_channels=8, norm_num_groups=4, num_layers=1,
                    positional_embeddings="sinusoidal", num_positional_embeddings=3),
        inputs=_temporal_inputs,
    ),
}
UNSUPPORTED = {
    "LatteTransformer3DModel": "the temporal blocks' AdaLN timestep is built in the forward as one row per (sample, "
    "patch), `[B*H*W, 6C]`: no contiguous split of it matches a rank's patches of every sample, so batch > 1 with "
    "per-sample timesteps would modulate with other samples' rows (exact only for batch 1 or one shared timestep, "
    "as LattePipeline passes; needs a split of one dim viewed as `[B, H*W]`)",
    "MochiTransformer3DModel": "the processor keeps only each sample's unpadded text tokens (from "
    "`encoder_attention_mask`), so the joint sequence length is data-dependent and differs from the text split",
    "MotifVideoTransformer3DModel": "image-to-video joins the SigLIP image tokens to the text in the forward, and "
    "decoder layers reuse the video as the joint text: two joint parts whose split-or-replicate choices one plan "
    "cannot keep consistent (text-to-video alone would be exact)",
}
