"""Tiny HunyuanVideo 1.5: transformer, pipeline and prompt embeddings."""

import torch
from diffusers import (
    AutoencoderKLHunyuanVideo15,
    ClassifierFreeGuidance,
    FlowMatchEulerDiscreteScheduler,
    HunyuanVideo15Pipeline,
    HunyuanVideo15Transformer3DModel,
)

from ._common import build_transformer, cast, embeds, padding_mask, quiet, seeded

HUNYUAN_VIDEO15_TEXT_DIM = 16  # text_embed_dim (Qwen2.5-VL width, 3584, in the real model)
HUNYUAN_VIDEO15_TEXT_2_DIM = 8  # text_embed_2_dim (ByT5 width, 1472, in the real model)
HUNYUAN_VIDEO15_LATENT_CHANNELS = 4  # tiny VAE latent channels (32 in the real model)


def tiny_hunyuan_video15_transformer(
    seed: int = 0, dtype: torch.dtype = torch.float32, **overrides
) -> HunyuanVideo15Transformer3DModel:
    """Tiny random `HunyuanVideo15Transformer3DModel` (1 block, 1 refiner block, 2 heads of dim 16, patch 1), with
    the pipeline's input channels: latents, condition latents and a mask channel (`2 * 4 + 1`).

    Args:
        seed (`int`): Seed for the weight initialisation.
        dtype (`torch.dtype`): Parameter dtype.
        overrides: Config values to change; `rope_axes_dim` must sum to `attention_head_dim`.
    """
    config = dict(
        in_channels=2 * HUNYUAN_VIDEO15_LATENT_CHANNELS + 1,
        out_channels=HUNYUAN_VIDEO15_LATENT_CHANNELS,
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=1,
        num_refiner_layers=1,
        mlp_ratio=2.0,
        patch_size=1,
        patch_size_t=1,
        text_embed_dim=HUNYUAN_VIDEO15_TEXT_DIM,
        text_embed_2_dim=HUNYUAN_VIDEO15_TEXT_2_DIM,
        image_embed_dim=12,
        rope_axes_dim=(4, 6, 6),
        target_size=32,
        task_type="t2v",
    )
    return build_transformer(HunyuanVideo15Transformer3DModel, config, overrides, seed, dtype)


def tiny_hunyuan_video15_pipeline(seed: int = 0, dtype: torch.dtype = torch.float32) -> HunyuanVideo15Pipeline:
    """Tiny `HunyuanVideo15Pipeline` without text encoders; height/width multiples of 8, `num_frames` of form 4k+1.

    The VAE compresses 8x in space and 4x in time, and the transformer patches 1x1, so a 32x48, 5-frame video has
    2 x 4 x 6 = 48 transformer tokens. The pipeline adds 729 image tokens to the text (all masked in text-to-video).

    Args:
        seed (`int`): Seed for the weight initialisation (the VAE uses `seed + 1`).
        dtype (`torch.dtype`): Parameter dtype of the transformer and VAE.
    """
    vae = seeded(
        seed + 1,
        lambda: AutoencoderKLHunyuanVideo15(
            latent_channels=HUNYUAN_VIDEO15_LATENT_CHANNELS,
            block_out_channels=(8, 8, 16, 16),
            layers_per_block=1,
            spatial_compression_ratio=8,
            temporal_compression_ratio=4,
        ),
    )
    return quiet(
        HunyuanVideo15Pipeline(
            text_encoder=None,
            tokenizer=None,
            transformer=tiny_hunyuan_video15_transformer(seed, dtype),
            vae=cast(vae, dtype),
            scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
            text_encoder_2=None,
            tokenizer_2=None,
            guider=ClassifierFreeGuidance(guidance_scale=6.0),
        )
    )


def tiny_hunyuan_video15_prompt_embeds(
    batch: int = 1, seq: int = 8, seq_2: int = 4, seed: int = 0, dtype: torch.dtype = torch.float32
) -> dict:
    """Random prompt and negative-prompt embeddings of both text encoders, with their masks, for
    `tiny_hunyuan_video15_pipeline`: `(batch, seq, 16)` with the last 2 tokens padded, `(batch, seq_2, 8)` with the
    last one padded, so every forward's joint attention masks padded text queries and keys.

    Args:
        batch (`int`): Batch size.
        seq (`int`), seq_2 (`int`): Number of text tokens of each encoder (at least 3 and 2).
        seed (`int`): Seed of the local generator.
        dtype (`torch.dtype`): Embedding dtype.
    """
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for prefix in ("", "negative_"):
        out[f"{prefix}prompt_embeds"] = embeds(gen, batch, seq, HUNYUAN_VIDEO15_TEXT_DIM, dtype)
        out[f"{prefix}prompt_embeds_mask"] = padding_mask(batch, seq, 2)
        out[f"{prefix}prompt_embeds_2"] = embeds(gen, batch, seq_2, HUNYUAN_VIDEO15_TEXT_2_DIM, dtype)
        out[f"{prefix}prompt_embeds_mask_2"] = padding_mask(batch, seq_2, 1)
    return out
