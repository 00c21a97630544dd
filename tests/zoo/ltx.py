"""LTX-Video family coverage."""

import torch

from .base import Case, randn


def _ltx_inputs(model, g, frames=3, height=2, width=4, text=8):
    # Per-token timesteps with the first frame held at t=0, as the image-to-video and condition pipelines pass them,
    # and a padded text mask (cross-attention, local). 24 tokens: 2, 3 and 4 ranks split them evenly.
    cfg = model.config
    tokens = frames * height * width
    timestep = torch.full((1, tokens), 700.0)
    timestep[:, : height * width] = 0.0
    text_mask = torch.ones(1, text)
    text_mask[:, 6:] = 0
    return {
        "hidden_states": randn(g, 1, tokens, cfg.in_channels),
        "encoder_hidden_states": randn(g, 1, text, cfg.caption_channels),
        "timestep": timestep,
        "encoder_attention_mask": text_mask,
        "num_frames": frames,
        "height": height,
        "width": width,
        "rope_interpolation_scale": (8 / 25, 32, 32),
    }


CASES = {
    "LTXVideoTransformer3DModel": Case(
        config=dict(
            in_channels=8,
            out_channels=8,
            num_attention_heads=4,
            attention_head_dim=8,
            cross_attention_dim=32,
            num_layers=2,
            caption_channels=16,
        ),
        inputs=_ltx_inputs,
    ),
}
UNSUPPORTED: dict[str, str] = {}
