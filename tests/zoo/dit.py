"""DiT-style coverage cases (DiT, PixArt, HunyuanDiT, the U-Net spatial and temporal transformer blocks)."""

import torch
from diffusers.models.embeddings import get_2d_rotary_pos_embed

from .base import Case, randn, timestep


def _dit_inputs(model, g, size=12):
    cfg = model.config
    return {
        "hidden_states": randn(g, 1, cfg.in_channels, size, size),  # 6 x 6 = 36 patches (DiT unpatchifies squares)
        "timestep": torch.randint(0, 1000, (1,), generator=g),
        "class_labels": torch.randint(0, cfg.num_embeds_ada_norm, (1,), generator=g),
    }


def _text_mask(g, text):
    mask = torch.ones(1, text)
    mask[:, -3:] = 0  # right padding, applied by the local cross-attention
    return mask


def _pixart_inputs(model, g, height=8, width=12, text=10):
    cfg = model.config
    return {
        "hidden_states": randn(g, 1, cfg.in_channels, height, width),  # 4 x 6 = 24 patches
        "encoder_hidden_states": randn(g, 1, text, cfg.caption_channels),
        "encoder_attention_mask": _text_mask(g, text),
        "timestep": timestep(g),
    }


def _unet_block_inputs(model, g, height=4, width=6, text=10):
    cfg = model.config
    return {
        "hidden_states": randn(g, 1, cfg.in_channels, height, width),  # 24 pixels, one token each
        "encoder_hidden_states": randn(g, 1, text, cfg.cross_attention_dim),
        "encoder_attention_mask": _text_mask(g, text),
    }


def _hunyuan_dit_inputs(model, g, height=8, width=12):
    cfg = model.config
    grid = (height // cfg.patch_size, width // cfg.patch_size)  # 4 x 6 = 24 patches
    return {
        "hidden_states": randn(g, 1, cfg.in_channels, height, width),
        "timestep": timestep(g),
        "encoder_hidden_states": randn(g, 1, cfg.text_len, cfg.cross_attention_dim),
        "text_embedding_mask": _text_mask(g, cfg.text_len),
        "encoder_hidden_states_t5": randn(g, 1, cfg.text_len_t5, cfg.cross_attention_dim_t5),
        "text_embedding_mask_t5": _text_mask(g, cfg.text_len_t5),
        "image_meta_size": torch.tensor([[64.0, 96.0, 64.0, 96.0, 0.0, 0.0]]),
        "style": torch.zeros(1, dtype=torch.long),
        # the pipeline's `(cos, sin)` tables, `[24, head_dim]` each
        "image_rotary_emb": get_2d_rotary_pos_embed(model.inner_dim // model.num_heads, ((0, 0), grid), grid),
    }


# Without text, a cross-attention config self-attends in `attn2`, which the plan attends locally as cross-attention.
_UNET_BLOCK = dict(num_attention_heads=2, attention_head_dim=16, in_channels=8, num_layers=2, norm_num_groups=4,
                   cross_attention_dim=16, use_linear_projection=True)  # fmt: skip


def _temporal_inputs(model, g, batch=2, frames=3, height=2, width=3):
    return {
        "hidden_states": randn(g, batch * frames, model.config.in_channels, height, width),  # 12 pixel rows
        "num_frames": frames,
    }


CASES = {
    "DiTTransformer2DModel": Case(
        config=dict(
            num_attention_heads=2,
            attention_head_dim=16,
            in_channels=4,
            out_channels=8,
            num_layers=2,
            sample_size=12,
            patch_size=2,
            num_embeds_ada_norm=10,
        ),
        inputs=_dit_inputs,
    ),
    "PixArtTransformer2DModel": Case(
        config=dict(
            num_attention_heads=2,
            attention_head_dim=16,
            in_channels=4,
            out_channels=8,
            num_layers=2,
            cross_attention_dim=32,
            sample_size=8,
            patch_size=2,
            caption_channels=16,
        ),
        inputs=_pixart_inputs,
    ),
    # 4 blocks: the last one takes the long skip connection of the first.
    "HunyuanDiT2DModel": Case(
        config=dict(
            num_attention_heads=2,
            attention_head_dim=16,
            in_channels=4,
            patch_size=2,
            sample_size=8,
            hidden_size=32,
            num_layers=4,
            mlp_ratio=2.0,
            cross_attention_dim=16,
            cross_attention_dim_t5=32,
            pooled_projection_dim=16,
            text_len=6,
            text_len_t5=8,
        ),
        inputs=_hunyuan_dit_inputs,
    ),
    # SD 2.x / SDXL layout (linear projections), cross-attention with a padding mask. The other layouts and input
    # modes (1x1-conv projections, discrete, patched) and the refused ones: `tests/test_modes.py`.
    "Transformer2DModel": Case(
        config=_UNET_BLOCK,
        inputs=_unet_block_inputs,
        limits="GLIGEN's `attention_type='gated'` (its fuser self-attends over image and grounding)",
    ),
    # DreamLite's Q/K RMS norm. Not its GQA: standalone, the model keeps `AttnProcessor2_0`, which cannot run
    # `num_kv_heads` (the DreamLite U-Net installs its GQA-aware processor, which calls `dispatch_attention_fn`).
    "DreamLiteTransformer2DModel": Case(
        config=dict(_UNET_BLOCK, qk_norm="rms_norm", ff_mult=2), inputs=_unet_block_inputs
    ),
    "TransformerTemporalModel": Case(
        config=dict(
            num_attention_heads=2,
            attention_head_dim=8,
            in_channels=8,
            norm_num_groups=4,
            num_layers=1,
            positional_embeddings="sinusoidal",
            num_positional_embeddings=3,
        ),
        inputs=_temporal_inputs,
    ),
}
UNSUPPORTED: dict[str, str] = {}
