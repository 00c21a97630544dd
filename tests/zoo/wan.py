"""Wan family coverage cases."""

import torch

from diffusers_usp.tiny import tiny_wan_transformer

from .base import Case, randn


def _wan_inputs(model, g, frames=3, height=8, width=8, text=8):
    cfg = model.config
    return {
        "hidden_states": randn(g, 1, cfg.in_channels, frames, height, width),
        "timestep": torch.randint(0, 1000, (1,), generator=g),
        "encoder_hidden_states": randn(g, 1, text, cfg.text_dim),
    }


CASES = {
    "WanTransformer3DModel": Case(
        config={},  # the tiny Wan 2.1 of `diffusers_usp.tiny`: 2 blocks, 4 heads of 16
        tiny=tiny_wan_transformer,
        inputs=_wan_inputs,
    ),
}
UNSUPPORTED: dict[str, str] = {}
