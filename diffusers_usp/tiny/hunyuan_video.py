"""Tiny HunyuanVideo: transformer, pipeline and prompt embeddings."""

import torch
from diffusers import (
    AutoencoderKLHunyuanVideo,
    FlowMatchEulerDiscreteScheduler,
    HunyuanVideoPipeline,
    HunyuanVideoTransformer3DModel,
)

from ._common import build_transformer, cast, embeds, padding_mask, quiet, seeded

HUNYUAN_VIDEO_TEXT_DIM = 16  # text_embed_dim (Llama width, 4096, in the real model)
HUNYUAN_VIDEO_POOLED_DIM = 8  # pooled_projection_dim (CLIP width, 768, in the real model)
HUNYUAN_VIDEO_LATENT_CHANNELS = 4  # tiny VAE latent channels = transformer in/out channels (16 in the real model)


def tiny_hunyuan_video_transformer(
    seed: int = 0, dtype: torch.dtype = torch.float32, **overrides
) -> HunyuanVideoTransformer3DModel:
    """Tiny random `HunyuanVideoTransformer3DModel` (1 double + 2 single blocks, 2 heads of dim 16, patch 2).

    Args:
        seed (`int`): Seed for the weight initialisation.
        dtype (`torch.dtype`): Parameter dtype.
        overrides: Config values to change; `rope_axes_dim` must sum to `attention_head_dim`.
    """
    config = dict(
        in_channels=HUNYUAN_VIDEO_LATENT_CHANNELS,
        out_channels=HUNYUAN_VIDEO_LATENT_CHANNELS,
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=1,
        num_single_layers=2,
        num_refiner_layers=1,
        mlp_ratio=2.0,
        patch_size=2,
        patch_size_t=1,
        text_embed_dim=HUNYUAN_VIDEO_TEXT_DIM,
        pooled_projection_dim=HUNYUAN_VIDEO_POOLED_DIM,
        rope_axes_dim=(4, 6, 6),
    )
    return build_transformer(HunyuanVideoTransformer3DModel, config, overrides, seed, dtype)


def tiny_hunyuan_video_pipeline(seed: int = 0, dtype: torch.dtype = torch.float32) -> HunyuanVideoPipeline:
    """Tiny `HunyuanVideoPipeline` without text encoders; height/width multiples of 16, `num_frames` of form 4k+1.

    The VAE keeps the real 8x spatial and 4x temporal compression, so a 64x64, 9-frame video has 3x8x8 latents,
    i.e. 3 * 4 * 4 = 48 transformer tokens after the 2x2 patching.

    Args:
        seed (`int`): Seed for the weight initialisation (the VAE uses `seed + 1`).
        dtype (`torch.dtype`): Parameter dtype of the transformer and VAE.
    """
    vae = seeded(
        seed + 1,
        lambda: AutoencoderKLHunyuanVideo(
            in_channels=3,
            out_channels=3,
            latent_channels=HUNYUAN_VIDEO_LATENT_CHANNELS,
            down_block_types=("HunyuanVideoDownBlock3D",) * 4,
            up_block_types=("HunyuanVideoUpBlock3D",) * 4,
            block_out_channels=(8, 8, 8, 8),
            layers_per_block=1,
            norm_num_groups=4,
            spatial_compression_ratio=8,
            temporal_compression_ratio=4,
        ),
    )
    return quiet(
        HunyuanVideoPipeline(
            text_encoder=None,
            tokenizer=None,
            text_encoder_2=None,
            tokenizer_2=None,
            vae=cast(vae, dtype),
            transformer=tiny_hunyuan_video_transformer(seed, dtype),
            scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        )
    )


def tiny_hunyuan_video_prompt_embeds(
    batch: int = 1, seq: int = 8, seed: int = 0, dtype: torch.dtype = torch.float32
) -> dict:
    """Random `prompt_embeds` (batch, seq, 16), `pooled_prompt_embeds` (batch, 8) and a prompt attention mask whose
    last 2 tokens are padding (masked out of every joint attention), for `tiny_hunyuan_video_pipeline`.

    Args:
        batch (`int`): Batch size.
        seq (`int`): Number of text tokens (at least 3).
        seed (`int`): Seed of the local generator.
        dtype (`torch.dtype`): Embedding dtype.
    """
    gen = torch.Generator().manual_seed(seed)
    return {
        "prompt_embeds": embeds(gen, batch, seq, HUNYUAN_VIDEO_TEXT_DIM, dtype),
        "pooled_prompt_embeds": embeds(gen, batch, 1, HUNYUAN_VIDEO_POOLED_DIM, dtype)[:, 0],
        "prompt_attention_mask": padding_mask(batch, seq, 2),
    }
