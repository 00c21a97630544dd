"""Joint-stream coverage (plans in `diffusers_usp/plans/joint_stream.py`): text and image in one stream, split as one
sequence and gathered at the last block's output."""

import torch

from .base import Case, randn
from .ernie_image import _unzero


def _krea2_inputs(model, g, text=4, height=4, width=5, batch=2):
    """A batch of 2 whose second prompt is padded (its last 2 text keys masked; diffusers' own test masks 1), GQA
    (4 query heads, 2 key/value heads), and 4 + 20 = 24 stream tokens."""
    cfg = model.config
    _unzero(model, g)
    ids = torch.zeros(text + height * width, 3)
    ids[text:, 1] = torch.arange(height).repeat_interleave(width)
    ids[text:, 2] = torch.arange(width).repeat(height)
    mask = torch.ones(batch, text, dtype=torch.bool)
    mask[1, -2:] = False
    return {
        "hidden_states": randn(g, batch, height * width, cfg.in_channels),
        "encoder_hidden_states": randn(g, batch, text, cfg.num_text_layers, cfg.text_hidden_dim),
        "timestep": torch.rand(batch, generator=g),
        "position_ids": ids,
        "encoder_attention_mask": mask,
    }


CASES = {
    "Krea2Transformer2DModel": Case(
        config=dict(
            in_channels=8,
            num_layers=2,
            attention_head_dim=8,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=32,
            timestep_embed_dim=8,
            text_hidden_dim=16,
            num_text_layers=3,
            text_num_attention_heads=2,
            text_num_key_value_heads=1,
            text_intermediate_size=16,
            num_layerwise_text_blocks=1,
            num_refiner_text_blocks=1,
            axes_dims_rope=(4, 2, 2),
        ),
        inputs=_krea2_inputs,
    ),
}
UNSUPPORTED: dict[str, str] = {}
