"""PRX coverage (plan in `diffusers_usp/plans/prx.py`): image queries against `[text, image]` keys.

24 image patches (a 8 x 12 latent, patch 2) and 10 text tokens, the last 3 padded: the pipelines pass the prompt's
padding mask, which the processor extends over the image keys.
"""

import torch

from .base import Case, randn

TEXT = 10


def _prx_inputs(model, g, batch=1, height=8, width=12):
    cfg = model.config
    mask = torch.ones(batch, TEXT, dtype=torch.bool)
    mask[:, TEXT - 3 :] = False
    return {
        "hidden_states": randn(g, batch, cfg.in_channels, height, width),
        "timestep": torch.rand(batch, generator=g),
        "encoder_hidden_states": randn(g, batch, TEXT, cfg.context_in_dim),
        "attention_mask": mask,
    }


PRX_CONFIG = dict(in_channels=4, patch_size=2, context_in_dim=24, hidden_size=32, mlp_ratio=2.0, num_heads=2,
                  depth=1, axes_dim=[8, 8])  # fmt: skip

CASES = {"PRXTransformer2DModel": Case(config=PRX_CONFIG, inputs=_prx_inputs)}
UNSUPPORTED: dict[str, str] = {}
