"""PRX coverage (plan in `diffusers_usp/plans/prx.py`): image queries against `[text, image]` keys.

24 image patches (a 8 x 12 latent, patch 2) and 10 text tokens, the last 3 padded: the pipelines pass the prompt's
padding mask, which the processor extends over the image keys.
"""

import torch

from .base import Case, randn
from .ernie_image import _unzero

TEXT = 10


def _prx_inputs(model, g, batch=1, height=8, width=12, text=TEXT):
    cfg = model.config
    _unzero(model, g)  # every block's modulation (shift, scale and the gates of attention and MLP) starts at zero
    mask = torch.ones(batch, text, dtype=torch.bool)
    for b in range(batch):  # each sample's own padding
        mask[b, text - 3 + b :] = False
    return {
        "hidden_states": randn(g, batch, cfg.in_channels, height, width),
        "timestep": torch.rand(batch, generator=g),
        "encoder_hidden_states": randn(g, batch, text, cfg.context_in_dim),
        "attention_mask": mask,
    }


PRX_CONFIG = dict(in_channels=4, patch_size=2, context_in_dim=24, hidden_size=32, mlp_ratio=2.0, num_heads=2,
                  depth=1, axes_dim=[8, 8])  # fmt: skip

CASES = {"PRXTransformer2DModel": Case(config=PRX_CONFIG, inputs=_prx_inputs)}
UNSUPPORTED: dict[str, str] = {}
