"""Tiny Sana: transformer, pipeline (with a tiny `AutoencoderDC`), prompt embeddings."""

import torch
from diffusers import AutoencoderDC, FlowMatchEulerDiscreteScheduler, SanaPipeline, SanaTransformer2DModel

from ._common import build_transformer, cast, embeds, padding_mask, quiet, seeded

SANA_TEXT_DIM = 8  # caption_channels (Gemma-2's width in the real model)
SANA_LATENT_CHANNELS = 4


def tiny_sana_transformer(seed: int = 0, dtype: torch.dtype = torch.float32, **overrides) -> SanaTransformer2DModel:
    """Tiny random `SanaTransformer2DModel` (1 block, 2 heads of dim 8, patch 1, the released models' layout).

    Args:
        seed (`int`): Seed for the weight initialisation.
        dtype (`torch.dtype`): Parameter dtype.
        overrides: Config values to change (e.g. `interpolation_scale=1.0` for the 2K/4K models' sin-cos positions).
    """
    config = dict(
        patch_size=1,
        in_channels=SANA_LATENT_CHANNELS,
        out_channels=SANA_LATENT_CHANNELS,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        num_cross_attention_heads=2,
        cross_attention_head_dim=8,
        cross_attention_dim=16,  # the inner dim: cross-attention reads the projected caption
        caption_channels=SANA_TEXT_DIM,
        sample_size=8,
    )
    return build_transformer(SanaTransformer2DModel, config, overrides, seed, dtype)


def tiny_sana_vae() -> AutoencoderDC:
    """Tiny random `AutoencoderDC` (6 stages: scale factor 32 as Sana's DC-AE, which `SanaPipeline` requires of the
    image size; multiscale linear attention in the last two)."""
    blocks = ("ResBlock",) * 4 + ("EfficientViTBlock",) * 2
    return AutoencoderDC(
        in_channels=3,
        latent_channels=SANA_LATENT_CHANNELS,
        attention_head_dim=2,
        encoder_block_types=blocks,
        decoder_block_types=blocks,
        encoder_block_out_channels=(8,) * 6,
        decoder_block_out_channels=(8,) * 6,
        encoder_qkv_multiscales=((),) * 4 + ((5,),) * 2,
        decoder_qkv_multiscales=((),) * 4 + ((5,),) * 2,
        encoder_layers_per_block=(1,) * 6,
        decoder_layers_per_block=(1,) * 6,
        scaling_factor=0.41407,  # Sana's DC-AE f32c32 value; keeps the latent (un)scaling path live
    )


def tiny_sana_pipeline(seed: int = 0, dtype: torch.dtype = torch.float32) -> SanaPipeline:
    """Tiny `SanaPipeline` without text encoder (pass `tiny_sana_prompt_embeds`), image sizes multiples of 32.

    `pipe.vae_scale_factor == 32`: a 128x96 image gives 4x3 latents, 12 tokens in 4 rows. Call it with
    `use_resolution_binning=False` (binning snaps sizes to the real model's aspect-ratio table).

    Args:
        seed (`int`): Seed for the weight initialisation (the VAE uses `seed + 1`).
        dtype (`torch.dtype`): Parameter dtype of the transformer and VAE.
    """
    vae = seeded(seed + 1, tiny_sana_vae)
    return quiet(
        SanaPipeline(
            tokenizer=None,
            text_encoder=None,
            vae=cast(vae, dtype),
            transformer=tiny_sana_transformer(seed, dtype),
            scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        )
    )


def tiny_sana_prompt_embeds(
    batch: int = 1, seq: int = 8, padding: int = 3, seed: int = 0, dtype: torch.dtype = torch.float32
) -> dict:
    """Random `prompt_embeds` (batch, seq, 8) with a padding `prompt_attention_mask` (the last `padding` tokens are
    padding, as Sana's tokenizer pads to a fixed length), and the same for the negative prompt.

    Args:
        batch (`int`): Batch size.
        seq (`int`): Number of text tokens.
        padding (`int`): Padding tokens at the end of each prompt.
        seed (`int`): Seed of the local generator.
        dtype (`torch.dtype`): Embedding dtype.
    """
    gen = torch.Generator().manual_seed(seed)
    mask = padding_mask(batch, seq, padding)
    return {
        "prompt_embeds": embeds(gen, batch, seq, SANA_TEXT_DIM, dtype),
        "prompt_attention_mask": mask,
        "negative_prompt_embeds": embeds(gen, batch, seq, SANA_TEXT_DIM, dtype),
        "negative_prompt_attention_mask": mask.clone(),
    }
