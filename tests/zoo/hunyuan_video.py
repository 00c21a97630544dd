"""HunyuanVideo family coverage cases."""

import torch

from .base import Case, randn, timestep


def _framepack_inputs(model, g, height=8, width=12, text=8, image=2):
    # The pipeline's packing: the current window, one clean frame (1x history), 2 frames of 2x and 12 of 4x history.
    # Tokens: 24 current + 24 clean + 6 (2x) + 6 (4x) = 60. Text: 2 image tokens + 6 valid prompt tokens after the
    # trim = 8, sharded on 2 and 4 ranks, replicated on 3.
    cfg = model.config
    text_mask = torch.ones(1, text, dtype=torch.long)
    text_mask[:, 6:] = 0
    return {
        "hidden_states": randn(g, 1, cfg.in_channels, 1, height, width),
        "timestep": timestep(g),
        "encoder_hidden_states": randn(g, 1, text, cfg.text_embed_dim),
        "encoder_attention_mask": text_mask,
        "pooled_projections": randn(g, 1, cfg.pooled_projection_dim),
        "image_embeds": randn(g, 1, image, cfg.image_proj_dim),
        "indices_latents": torch.tensor([15]),
        "guidance": torch.full((1,), 6000.0),
        "latents_clean": randn(g, 1, cfg.in_channels, 1, height, width),
        "indices_latents_clean": torch.tensor([0]),
        "latents_history_2x": randn(g, 1, cfg.in_channels, 2, height, width),
        "indices_latents_history_2x": torch.tensor([13, 14]),
        "latents_history_4x": randn(g, 1, cfg.in_channels, 12, height, width),
        "indices_latents_history_4x": torch.arange(1, 13),
    }


def _hunyuan_video_inputs(model, g, frames=3, height=8, width=8, text=8):
    # 3 x 4 x 4 = 48 video tokens; the last 3 prompt tokens are padding, masked out of every joint attention.
    cfg = model.config
    text_mask = torch.ones(1, text, dtype=torch.long)
    text_mask[:, -3:] = 0
    return {
        "hidden_states": randn(g, 1, cfg.in_channels, frames, height, width),
        "timestep": timestep(g),
        "encoder_hidden_states": randn(g, 1, text, cfg.text_embed_dim),
        "encoder_attention_mask": text_mask,
        "pooled_projections": randn(g, 1, cfg.pooled_projection_dim),
        "guidance": torch.full((1,), 6000.0),
    }


CASES = {
    "HunyuanVideoTransformer3DModel": Case(
        config=dict(
            in_channels=4,
            out_channels=4,
            num_attention_heads=2,
            attention_head_dim=16,
            num_layers=1,
            num_single_layers=2,
            num_refiner_layers=1,
            mlp_ratio=2.0,
            patch_size=2,
            patch_size_t=1,
            text_embed_dim=16,
            pooled_projection_dim=8,
            rope_axes_dim=(4, 6, 6),
        ),
        inputs=_hunyuan_video_inputs,
    ),
    "HunyuanVideoFramepackTransformer3DModel": Case(
        config=dict(
            in_channels=4,
            out_channels=4,
            num_attention_heads=2,
            attention_head_dim=16,
            num_layers=1,
            num_single_layers=2,
            num_refiner_layers=1,
            mlp_ratio=2.0,
            patch_size=2,
            patch_size_t=1,
            text_embed_dim=16,
            pooled_projection_dim=8,
            rope_axes_dim=(4, 6, 6),
            has_image_proj=True,
            image_proj_dim=8,
            has_clean_x_embedder=True,
        ),
        inputs=_framepack_inputs,
    ),
}
UNSUPPORTED = {}
