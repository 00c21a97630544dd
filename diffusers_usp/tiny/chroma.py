"""Tiny Chroma: transformer, pipeline and prompt embeddings with Chroma's padded-prompt mask."""

import torch
from diffusers import ChromaPipeline, ChromaTransformer2DModel, FlowMatchEulerDiscreteScheduler

from ._common import build_transformer, embeds, quiet
from .flux import FLUX_LATENT_CHANNELS, _flux_vae

# Inner dim 4 * 16 = 64; rope axes (4, 6, 6) must sum to the head dim (16).
CHROMA_TEXT_DIM = 32  # joint_attention_dim (T5 width, 4096, in the real model)
CHROMA_LATENT_CHANNELS = FLUX_LATENT_CHANNELS  # the tiny FLUX.1 VAE's; ChromaPipeline packs 2x2 patches -> 16


def tiny_chroma_transformer(seed: int = 0, dtype: torch.dtype = torch.float32, **overrides) -> ChromaTransformer2DModel:
    """Tiny random `ChromaTransformer2DModel` (1 double + 1 single block, 4 heads of dim 16, a 1-layer modulation
    approximator).

    Args:
        seed (`int`): Seed for the weight initialisation.
        dtype (`torch.dtype`): Parameter dtype.
        overrides: Config values to change; `axes_dims_rope` must sum to `attention_head_dim`.
    """
    config = dict(
        patch_size=1,
        in_channels=4 * CHROMA_LATENT_CHANNELS,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=4,
        joint_attention_dim=CHROMA_TEXT_DIM,
        axes_dims_rope=(4, 6, 6),
        approximator_num_channels=8,
        approximator_hidden_dim=32,
        approximator_layers=1,
    )
    return build_transformer(ChromaTransformer2DModel, config, overrides, seed, dtype)


def tiny_chroma_pipeline(seed: int = 0, dtype: torch.dtype = torch.float32) -> ChromaPipeline:
    """Tiny `ChromaPipeline` without its T5 encoder; image height/width must be multiples of 4 (a 2-block VAE, then
    2x2 packing: 48x48 pixels are 12x12 = 144 image tokens).

    Args:
        seed (`int`): Seed for the weight initialisation (the VAE uses `seed + 1`).
        dtype (`torch.dtype`): Parameter dtype of the transformer and VAE.
    """
    return quiet(
        ChromaPipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(),
            vae=_flux_vae(seed + 1, dtype),  # Chroma reuses the FLUX.1 VAE
            text_encoder=None,
            tokenizer=None,
            transformer=tiny_chroma_transformer(seed, dtype),
        )
    )


def chroma_prompt_mask(batch: int, seq: int, padding: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A `(batch, seq)` prompt mask as `ChromaPipeline._get_t5_prompt_embeds` makes it from a tokenizer's: the
    `seq - padding` prompt tokens and the first padding token are 1, the other padding tokens 0."""
    return (torch.arange(seq) <= seq - padding).to(dtype).expand(batch, seq).clone()


def tiny_chroma_prompt_embeds(
    batch: int = 1, seq: int = 8, negative_seq: int = 6, seed: int = 0, dtype: torch.dtype = torch.float32
) -> dict:
    """Random `prompt_embeds` (batch, seq, 32) and `negative_prompt_embeds` (batch, negative_seq, 32), each with the
    prompt mask ChromaPipeline builds from a padded T5 prompt (3 and 2 padding tokens), for `tiny_chroma_pipeline`.

    Chroma runs CFG as two forwards per step, each with its own text length and mask: the pipeline requires the
    negative embeddings and masks when it has no text encoder. 8 and 6 text tokens: on 3 ranks one prompt is
    sharded with the image and the other stays whole.

    Args:
        batch (`int`): Batch size.
        seq (`int`): Number of prompt tokens (at least 4).
        negative_seq (`int`): Number of negative-prompt tokens (at least 3).
        seed (`int`): Seed of the local generator.
        dtype (`torch.dtype`): Embedding and mask dtype.
    """
    gen = torch.Generator().manual_seed(seed)
    return {
        "prompt_embeds": embeds(gen, batch, seq, CHROMA_TEXT_DIM, dtype),
        "prompt_attention_mask": chroma_prompt_mask(batch, seq, 3, dtype),
        "negative_prompt_embeds": embeds(gen, batch, negative_seq, CHROMA_TEXT_DIM, dtype),
        "negative_prompt_attention_mask": chroma_prompt_mask(batch, negative_seq, 2, dtype),
    }
