"""CogView coverage cases (CogView3-Plus, CogView4).

The text length divides by 2 but not by 3 or 4: world 2 shards the text, worlds 3 and 4 keep it replicated.
"""

import torch

from .base import Case, randn, timestep


def _cogview_inputs(model, g, height=8, width=12, text=10):
    cfg = model.config
    return {
        "hidden_states": randn(g, 1, cfg.in_channels, height, width),  # 4 x 6 = 24 patches
        "encoder_hidden_states": randn(g, 1, text, cfg.text_embed_dim),
        "timestep": timestep(g),
        "original_size": torch.tensor([[64.0, 96.0]]),
        "target_size": torch.tensor([[64.0, 96.0]]),
        "crop_coords": torch.tensor([[0.0, 0.0]]),
    }


_TINY = dict(patch_size=2, in_channels=4, out_channels=4, num_layers=2, attention_head_dim=16, num_attention_heads=2,
             text_embed_dim=16, time_embed_dim=32, condition_dim=8, pos_embed_max_size=8, sample_size=8)  # fmt: skip

CASES = {
    "CogView3PlusTransformer2DModel": Case(config=_TINY, inputs=_cogview_inputs),
    "CogView4Transformer2DModel": Case(config=dict(_TINY, rope_axes_dim=(16, 16)), inputs=_cogview_inputs),
}
UNSUPPORTED: dict[str, str] = {}
