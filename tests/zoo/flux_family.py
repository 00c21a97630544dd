"""MMDiT coverage cases, Flux descendants and relatives (plans in `diffusers_usp/plans/flux_family.py`).

Token counts: 24 image tokens and 12 text tokens, which 2, 3 and 4 ranks all divide, so the text is sharded too.
"""

import torch

from .base import Case, randn, timestep

IMAGE_H, IMAGE_W, TEXT = 4, 6, 12


def _grid_ids(axes: int, height: int = IMAGE_H, width: int = IMAGE_W) -> torch.Tensor:
    """`[H*W, axes]` position ids, rows and columns in the last two axes (Flux's layout)."""
    ids = torch.zeros(height, width, axes)
    ids[..., -2] = torch.arange(height)[:, None]
    ids[..., -1] = torch.arange(width)[None, :]
    return ids.reshape(-1, axes)


def _text_ids(axes: int, text: int = TEXT) -> torch.Tensor:
    ids = torch.zeros(text, axes)
    ids[:, 0] = torch.arange(text)  # distinct text positions, so a text RoPE row split wrongly shows in the output
    return ids


def _flux_like_inputs(model, g):
    cfg = model.config
    return {
        "hidden_states": randn(g, 1, IMAGE_H * IMAGE_W, cfg.in_channels),
        "encoder_hidden_states": randn(g, 1, TEXT, cfg.joint_attention_dim),
        "timestep": timestep(g, scale=1.0),
        "img_ids": _grid_ids(3),
        "txt_ids": _text_ids(3),
    }


def _flux2_inputs(model, g):
    cfg = model.config
    return {
        "hidden_states": randn(g, 1, IMAGE_H * IMAGE_W, cfg.in_channels),
        "encoder_hidden_states": randn(g, 1, TEXT, cfg.joint_attention_dim),
        "timestep": timestep(g, scale=1.0),
        "img_ids": _grid_ids(4)[None],  # batched `[B, S, 4]`, as Flux2Pipeline passes them
        "txt_ids": _text_ids(4)[None],
        "guidance": torch.full((1,), 4.0),
    }


def _flux3_inputs(model, g):
    cfg = model.config
    cond_ids = _grid_ids(4, 2, IMAGE_W)
    cond_ids[:, 0] = 1  # the reference image sits on the next time plane
    return {
        "hidden_states": randn(g, 1, IMAGE_H * IMAGE_W, cfg.in_channels),
        "encoder_hidden_states": randn(g, 1, TEXT, cfg.joint_attention_dim),
        "timestep": timestep(g, scale=1.0),
        "img_ids": _grid_ids(4),
        "txt_ids": _text_ids(4),
        "image_cond_hidden_states": randn(g, 1, 2 * IMAGE_W, cfg.cond_in_channels),
        "image_cond_ids": cond_ids,
    }


def _fibo_inputs(model, g):
    cfg = model.config
    inputs = _flux_like_inputs(model, g)
    layers = cfg.num_layers + cfg.num_single_layers
    inputs["text_encoder_layers"] = [randn(g, 1, TEXT, cfg.text_encoder_dim) for _ in range(layers)]
    return inputs


def _glm_image_inputs(model, g):
    cfg = model.config
    p = cfg.patch_size
    tokens = IMAGE_H * IMAGE_W
    return {
        "hidden_states": randn(g, 1, cfg.in_channels, IMAGE_H * p, IMAGE_W * p),
        "encoder_hidden_states": randn(g, 1, TEXT, cfg.text_embed_dim),
        "prior_token_id": torch.randint(0, cfg.prior_vq_quantizer_codebook_size, (1, tokens), generator=g),
        "prior_token_drop": torch.rand(1, tokens, generator=g) < 0.25,
        "timestep": timestep(g),
        "target_size": torch.tensor([[IMAGE_H * p * 8.0, IMAGE_W * p * 8.0]]),
        "crop_coords": torch.zeros(1, 2),
    }


_FLUX_LIKE = dict(in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=4,
                  joint_attention_dim=32, axes_dims_rope=[4, 6, 6])  # fmt: skip


def _chroma_inputs(model, g):
    """Flux's inputs, and the padding vector over `[text, image]` that ChromaPipeline always passes: the last 3 text
    tokens padded, so padded text queries get rows of their own in each block's dense mask."""
    inputs = _flux_like_inputs(model, g)
    mask = torch.ones(1, TEXT + IMAGE_H * IMAGE_W, dtype=torch.bool)
    mask[:, TEXT - 3 : TEXT] = False
    return {**inputs, "attention_mask": mask}


CASES = {
    "BriaTransformer2DModel": Case(config=_FLUX_LIKE, inputs=_flux_like_inputs),
    "ChromaTransformer2DModel": Case(
        config=dict(_FLUX_LIKE, approximator_num_channels=8, approximator_hidden_dim=32, approximator_layers=1),
        inputs=_chroma_inputs,
    ),
    "BriaFiboTransformer2DModel": Case(config=dict(_FLUX_LIKE, text_encoder_dim=24), inputs=_fibo_inputs),
    "Flux2Transformer2DModel": Case(
        config=dict(
            in_channels=16,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=4,
            joint_attention_dim=32,
            timestep_guidance_channels=32,
            axes_dims_rope=(4, 4, 4, 4),
        ),
        inputs=_flux2_inputs,
        limits="the reference-image KV cache (`kv_cache_mode='extract'` or `'cached'`: Flux2KleinKVPipeline with "
        "reference images; `kv_cache_mode=None` works)",
    ),
    "Flux3Transformer2DModel": Case(
        config=dict(
            in_channels=16,
            cond_in_channels=8,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=4,
            joint_attention_dim=32,
            timestep_channels=32,
            axes_dims_rope=(4, 4, 4, 4),
        ),
        inputs=_flux3_inputs,
    ),
    "GlmImageTransformer2DModel": Case(
        config=dict(
            patch_size=2,
            in_channels=4,
            out_channels=4,
            num_layers=2,
            attention_head_dim=16,
            num_attention_heads=4,
            text_embed_dim=32,
            time_embed_dim=32,
            condition_dim=8,
            prior_vq_quantizer_codebook_size=64,
        ),
        inputs=_glm_image_inputs,
    ),
    "LongCatImageTransformer2DModel": Case(config=dict(_FLUX_LIKE, pooled_projection_dim=32), inputs=_flux_like_inputs),
    "OvisImageTransformer2DModel": Case(config=dict(_FLUX_LIKE, out_channels=16), inputs=_flux_like_inputs),
}

UNSUPPORTED = {
    "NucleusMoEImageTransformer2DModel": (
        "expert-choice MoE routing picks the top tokens per expert across the whole sequence (sharding changes the "
        "routing); image queries also attend to image + text keys, a K/V longer than the sharded queries"
    ),
}
