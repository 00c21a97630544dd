"""AnyFlow coverage (plan in `diffusers_usp/plans/anyflow.py`): dict RoPE tables and per-frame timesteps."""

import torch

from .base import Case, randn
from .ernie_image import _unzero


def _anyflow_inputs(model, g, batch=1, frames=3, height=4, width=8, text=12, image=0):
    """3 frames of 2 x 4 patches (24 tokens), a different timestep per frame (so the per-token modulation differs
    across the split), and, with `image`, image-prompt tokens joined to the text."""
    cfg = model.config
    _unzero(model, g)
    inputs = {
        "hidden_states": randn(g, batch, frames, cfg.in_channels, height, width),  # [B, F, C, H, W]
        "timestep": torch.rand(batch, frames, generator=g) * 1000,
        "r_timestep": torch.rand(batch, frames, generator=g) * 500,
        "encoder_hidden_states": randn(g, batch, text, cfg.text_dim),
    }
    if image:
        inputs["encoder_hidden_states_image"] = randn(g, batch, image, cfg.image_dim)
    return inputs


# diffusers' test config, one layer.
ANYFLOW_CONFIG = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4,
                      out_channels=4, text_dim=16, freq_dim=256, ffn_dim=32, num_layers=1, cross_attn_norm=True,
                      rope_max_seq_len=32, gate_value=0.25, deltatime_type="r")  # fmt: skip

CASES = {"AnyFlowTransformer3DModel": Case(config=ANYFLOW_CONFIG, inputs=_anyflow_inputs)}
UNSUPPORTED: dict[str, str] = {}
