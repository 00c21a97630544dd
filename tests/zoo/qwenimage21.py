"""Qwen-Image 2.1 coverage (plan in `diffusers_usp/plans/qwenimage21.py`): block-causal attention over one joint
text/image sequence."""

import torch

from .base import Case, randn


def qwenimage21_inputs(model, g, texts=(3, 5), cond=(2, 2), target=(3, 4), batch=2, pad=2):
    """Text, a condition image, text, then the target image: 3 + 4 + 5 + 12 = 24 tokens, causal over the text and
    bidirectional inside each image. A batch of 2 whose second prompt is right-padded (`pad` text keys masked).
    `texts`, `cond` and `target` give other layouts (odd lengths); `pad=None` passes no text mask."""
    cfg = model.config
    slots = lambda hw: hw[0] * hw[1] // 4  # noqa: E731 - one vision-language slot per 2x2 latent tokens
    vlm = [False] * texts[0] + [True] * slots(cond) + [False] * texts[1]
    img_mask = torch.tensor(vlm + [True] * slots(target))[None].expand(batch, -1)
    text_mask = torch.ones(batch, len(vlm), dtype=torch.bool)
    if pad:
        text_mask[-1, -pad:] = False
    text_mask = None if pad is None else text_mask  # no mask at all: the model passes no key-padding vector
    return {
        "hidden_states": randn(g, batch, cond[0] * cond[1] + target[0] * target[1], cfg.in_channels),
        "encoder_hidden_states": randn(g, batch, len(vlm), cfg.context_in_dim),
        "encoder_hidden_states_mask": text_mask,
        "timestep": torch.rand(batch, generator=g),
        "img_shapes": [[(1, *cond), (1, *target)]] * batch,
        "img_mask": img_mask,
    }


QWENIMAGE21_CONFIG = dict(
    patch_size=1,
    in_channels=4,
    out_channels=4,
    num_layers=2,
    attention_head_dim=16,
    num_attention_heads=2,
    context_in_dim=8,
    mlp_ratio=2,
    axes_dims_rope=(4, 6, 6),
)
CASES = {
    "QwenImage21Transformer2DModel": Case(
        config=QWENIMAGE21_CONFIG,
        inputs=qwenimage21_inputs,
        limits="the prefix KV cache (`kv_cache`: pass `use_kv_cache=False` to QwenImage21Pipeline)",
    ),
}
UNSUPPORTED: dict[str, str] = {}
