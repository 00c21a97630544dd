"""Joint-stream coverage (plans in `diffusers_usp/plans/joint_stream.py`): text (or gist) and image tokens in one
stream, split as one sequence and gathered at the last block's output."""

import torch

from .base import Case, randn
from .ernie_image import _unzero


def krea2_inputs(model, g, text=4, height=4, width=5, batch=2, masked=True):
    """A batch of 2 whose second prompt is padded (its last 2 text keys masked; diffusers' own test masks 1), GQA
    (4 query heads, 2 key/value heads), and 4 + 20 = 24 stream tokens; other sizes, and no mask, on request."""
    cfg = model.config
    _unzero(model, g)
    ids = torch.zeros(text + height * width, 3)
    ids[text:, 1] = torch.arange(height).repeat_interleave(width)
    ids[text:, 2] = torch.arange(width).repeat(height)
    mask = torch.ones(batch, text, dtype=torch.bool)
    mask[-1, -2:] = False
    return {
        "hidden_states": randn(g, batch, height * width, cfg.in_channels),
        "encoder_hidden_states": randn(g, batch, text, cfg.num_text_layers, cfg.text_hidden_dim),
        "timestep": torch.rand(batch, generator=g),
        "position_ids": ids,
        "encoder_attention_mask": mask if masked else None,
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
        inputs=krea2_inputs,
    ),
}


def fibo2_inputs(model, g, batch=2, size=8, context=None):
    """Prompts of 4 and 16 text tokens get 4 and 8 gist tokens (diffusers' padded-batch test): the first prompt's
    gist is padded, so the stream is `[image, gist]` (16 + 8 = 24 tokens) under a key-padding mask. `context`: the
    latent sizes of images to edit, whose tokens join the stream."""
    cfg = model.config
    _unzero(model, g)
    mask = torch.ones(batch, 16, dtype=torch.bool)
    mask[0, 4:] = False
    inputs = {
        "hidden_states": randn(g, batch, cfg.in_channels, size, size),
        "timestep": torch.rand(batch, generator=g),
        "encoder_hidden_states": randn(g, batch, 1 + len(cfg.injection_layer_ids), 16, cfg.cap_feat_dim),
        "encoder_attention_mask": mask if batch == 2 else None,
    }
    if context:
        inputs["context_latents"] = [randn(g, batch, cfg.in_channels, h, w) for h, w in context]
    return inputs


CASES["BriaFibo2Transformer2DModel"] = Case(
    config=dict(
        in_channels=4,
        patch_size=2,
        dim=32,
        n_layers=2,
        n_refiner_layers=1,
        n_heads=2,
        cap_feat_dim=24,
        injection_layer_ids=(1,),
        perceiver_num_layers=1,
        min_num_gist_tokens=4,
        max_num_gist_tokens=8,
        gist_step=4,
        gist_min_text_len=4,
        gist_max_text_len=16,
        axes_dims=(4, 6, 6),
        axes_lens=(16, 16, 16),
    ),
    inputs=fibo2_inputs,
)
UNSUPPORTED: dict[str, str] = {}
