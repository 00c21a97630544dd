"""JoyImage coverage (plans in `diffusers_usp/plans/joyimage.py`).

JoyImage-Edit: two items (the edit layout, `[B, n, C, t, h, w]`) of a 4 x 12 latent, patch 2: 2 x 2 x 6 = 24 image
tokens and 12 text tokens, which 2, 3 and 4 ranks all divide. `rope_type="mrope"` gives the text its own RoPE rows,
the harder case (with "rope" the text table is None and the plan leaves it alone).
"""

import torch

from .base import Case, randn


def _joyimage_edit_inputs(model, g, items=2, height=4, width=12, text=12):
    cfg = model.config
    return {
        "hidden_states": randn(g, 1, items, cfg.in_channels, 1, height, width),
        "timestep": torch.randint(0, 1000, (1,), generator=g).float(),
        "encoder_hidden_states": randn(g, 1, text, cfg.text_dim),
    }


def _joyimage_edit_plus_inputs(model, g, text=12):
    """Two components (target 1 x 2 x 6 and a 1 x 2 x 4 reference: 20 patches) padded to 24, and a text mask with
    its last 3 tokens padded: the joint key mask masks 4 image and 3 text keys."""
    cfg = model.config
    pt, ph, pw = cfg.patch_size
    text_mask = torch.ones(1, text)
    text_mask[:, -3:] = 0
    return {
        "hidden_states": randn(g, 1, 24, cfg.in_channels, pt, ph, pw),
        "timestep": torch.randint(0, 1000, (1,), generator=g).float(),
        "encoder_hidden_states": randn(g, 1, text, cfg.text_dim),
        "encoder_hidden_states_mask": text_mask,
        "shape_list": [[(1, 2, 6), (1, 2, 4)]],
    }


CASES = {
    "JoyImageEditTransformer3DModel": Case(
        config=dict(
            patch_size=[1, 2, 2],
            in_channels=4,
            hidden_size=64,
            num_attention_heads=4,
            text_dim=32,
            num_layers=2,
            rope_dim_list=[4, 6, 6],
            rope_type="mrope",
        ),
        inputs=_joyimage_edit_inputs,
    ),
}
CASES["JoyImageEditPlusTransformer3DModel"] = Case(
    config=dict(
        patch_size=[1, 2, 2],
        in_channels=4,
        hidden_size=64,
        num_attention_heads=4,
        text_dim=32,
        num_layers=2,
        rope_dim_list=[4, 6, 6],
    ),  # fmt: skip
    inputs=_joyimage_edit_plus_inputs,
)
UNSUPPORTED = {}
