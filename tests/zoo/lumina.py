"""Lumina-Image 2.0 coverage case (LuminaNext: `lumina_next.py`)."""

import torch

from .base import Case, randn, timestep


def _lumina2_inputs(model, g, height=8, width=12, text=16, words=(12, 8)):
    cfg = model.config
    # Two right-padded prompts of 12 and 8 tokens: joint sequences of 12 + 24 and 8 + 24 image tokens, the second
    # padded to 36, so the main layers take a padding mask.
    mask = torch.arange(text)[None] < torch.tensor(words)[:, None]
    return {
        "hidden_states": randn(g, 2, cfg.in_channels, height, width),
        "timestep": timestep(g, batch=2, scale=1.0),
        "encoder_hidden_states": randn(g, 2, text, cfg.cap_feat_dim),
        "encoder_attention_mask": mask,
    }


CASES = {
    # GQA (4 query heads, 2 KV heads); the text refiner attends with the padding mask, locally.
    "Lumina2Transformer2DModel": Case(
        config=dict(
            sample_size=8,
            patch_size=2,
            in_channels=4,
            hidden_size=32,
            num_layers=2,
            num_refiner_layers=1,
            num_attention_heads=4,
            num_kv_heads=2,
            multiple_of=16,
            axes_dim_rope=(4, 2, 2),
            axes_lens=(64, 16, 16),
            cap_feat_dim=16,
        ),
        inputs=_lumina2_inputs,
    ),
}
UNSUPPORTED = {}
