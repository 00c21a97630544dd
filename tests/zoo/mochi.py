"""Mochi coverage case: each sample attends to its own valid text only (a data-dependent joint length)."""

import torch

from .base import Case, randn

MOCHI_CONFIG = dict(
    patch_size=2,
    num_attention_heads=2,
    attention_head_dim=16,
    num_layers=2,  # the last block is `context_pre_only`: one of each block kind
    pooled_projection_dim=16,
    in_channels=4,
    out_channels=None,
    qk_norm="rms_norm",
    text_embed_dim=16,
    time_embed_dim=4,
    activation_fn="swiglu",
    max_sequence_length=16,
)


def mochi_inputs(model, g, frames=1, height=8, width=12, text=6, batch=2):
    """24 video tokens (1 x 4 x 6) and 6 prompt tokens: sample 0 keeps all 6, sample 1 keeps 3 that are not a
    prefix, so the two samples' joint sequences differ in length and the valid tokens are picked by index."""
    cfg = model.config
    mask = torch.ones(batch, text, dtype=torch.bool)
    mask[-1, 1] = mask[-1, 4:] = False
    return {
        "hidden_states": randn(g, batch, cfg.in_channels, frames, height, width),
        "encoder_hidden_states": randn(g, batch, text, cfg.text_embed_dim),
        "timestep": torch.randint(0, 1000, (batch,), generator=g),
        "encoder_attention_mask": mask,
    }


CASES = {"MochiTransformer3DModel": Case(config=MOCHI_CONFIG, inputs=mochi_inputs)}
UNSUPPORTED = {}
