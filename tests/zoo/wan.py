"""Wan family coverage cases."""

import torch

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
        config=dict(
            patch_size=(1, 2, 2),
            num_attention_heads=4,
            attention_head_dim=16,
            in_channels=4,
            out_channels=4,
            text_dim=32,
            freq_dim=32,
            ffn_dim=64,
            num_layers=2,
        ),
        inputs=_wan_inputs,
    ),
}
UNSUPPORTED: dict[str, str] = {}
