"""Qwen-Image coverage cases.

The edit layout (`zero_cond_t`, a target and a condition image, per-token `modulate_index`) and a padded prompt
cover the most per-token tensors. The text length divides by 2 but not by 3 or 4: world 2 shards the text and its
mask, worlds 3 and 4 replicate them.
"""

import torch

from .base import Case, randn, timestep


def _qwenimage_inputs(model, g, shape=(1, 4, 6), text=10):
    cfg = model.config
    images = [shape, shape]  # the target, then one condition image: 2 x 24 = 48 tokens
    return {
        "hidden_states": randn(g, 1, 48, cfg.in_channels),
        "encoder_hidden_states": randn(g, 1, text, cfg.joint_attention_dim),
        "encoder_hidden_states_mask": torch.arange(text)[None] < text - 3,  # 3 padding tokens
        "timestep": timestep(g, scale=1.0),
        "img_shapes": [images],
        "controlnet_block_samples": [randn(g, 1, 48, 32)],  # one residual for the 2 blocks (inner dim 2 x 16)
    }


CASES = {
    "QwenImageTransformer2DModel": Case(
        config=dict(
            patch_size=2,
            in_channels=16,
            out_channels=4,
            num_layers=2,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=16,
            axes_dims_rope=(4, 6, 6),
            zero_cond_t=True,
        ),
        inputs=_qwenimage_inputs,
    ),
}
UNSUPPORTED: dict[str, str] = {}
