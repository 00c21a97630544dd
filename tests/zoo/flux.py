"""Flux family coverage cases."""

import torch

from diffusers_usp.tiny import tiny_flux_transformer

from .base import Case, randn, timestep


def _flux_inputs(model, g, height=4, width=6, text=12):
    cfg = model.config
    img_ids = torch.zeros(height, width, 3)
    img_ids[..., 1] = torch.arange(height)[:, None]
    img_ids[..., 2] = torch.arange(width)[None, :]
    return {
        "hidden_states": randn(g, 1, height * width, cfg.in_channels),
        "encoder_hidden_states": randn(g, 1, text, cfg.joint_attention_dim),
        "pooled_projections": randn(g, 1, cfg.pooled_projection_dim),
        "timestep": timestep(g, scale=1.0),
        "img_ids": img_ids.reshape(-1, 3),
        "txt_ids": torch.zeros(text, 3),
        "guidance": torch.full((1,), 3.5),
        # ControlNet residuals: one for the 2 double blocks, one per single block (inner dim 4 heads x 16)
        "controlnet_block_samples": [randn(g, 1, height * width, 64)],
        "controlnet_single_block_samples": [randn(g, 1, height * width, 64) for _ in range(2)],
    }


CASES = {
    "FluxTransformer2DModel": Case(
        config={},  # the tiny Flux of `diffusers_usp.tiny`: 2 double and 2 single blocks, 4 heads of 16
        tiny=tiny_flux_transformer,
        inputs=_flux_inputs,
    ),
}
UNSUPPORTED: dict[str, str] = {}
