"""Tiny LTX-Video (0.9 layout): transformer, pipeline and prompt embeddings."""

import torch
from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXPipeline, LTXVideoTransformer3DModel

from ._common import build_transformer, cast, embeds, padding_mask, quiet, seeded

LTX_TEXT_DIM = 16  # caption_channels (T5 width, 4096, in the real model)
LTX_LATENT_CHANNELS = 8  # tiny VAE latent channels = transformer in/out channels (128 in the real model)


def tiny_ltx_transformer(seed: int = 0, dtype: torch.dtype = torch.float32, **overrides) -> LTXVideoTransformer3DModel:
    """Tiny random `LTXVideoTransformer3DModel` (2 blocks, 4 heads of dim 8, no patching: one token per latent pixel).

    Args:
        seed (`int`): Seed for the weight initialisation.
        dtype (`torch.dtype`): Parameter dtype.
        overrides: Config values to change (e.g. `num_attention_heads=6`).
    """
    config = dict(
        in_channels=LTX_LATENT_CHANNELS,
        out_channels=LTX_LATENT_CHANNELS,
        num_attention_heads=4,
        attention_head_dim=8,
        cross_attention_dim=32,
        num_layers=2,
        caption_channels=LTX_TEXT_DIM,
    )
    return build_transformer(LTXVideoTransformer3DModel, config, overrides, seed, dtype)


def tiny_ltx_pipeline(seed: int = 0, dtype: torch.dtype = torch.float32) -> LTXPipeline:
    """Tiny `LTXPipeline` without text encoder; height/width must be multiples of 32, `num_frames` of form 4k+1.

    The VAE compresses 4x in space and time (the real one: 32x and 8x), so a 32x32, 9-frame video has 3x8x8 latents,
    i.e. 192 video tokens.

    Args:
        seed (`int`): Seed for the weight initialisation (the VAE uses `seed + 1`).
        dtype (`torch.dtype`): Parameter dtype of the transformer and VAE.
    """
    vae = seeded(
        seed + 1,
        lambda: AutoencoderKLLTXVideo(
            latent_channels=LTX_LATENT_CHANNELS,
            block_out_channels=(8, 8, 8, 8),
            decoder_block_out_channels=(8, 8, 8, 8),
            layers_per_block=(1, 1, 1, 1, 1),
            decoder_layers_per_block=(1, 1, 1, 1, 1),
            spatio_temporal_scaling=(True, True, False, False),
            decoder_spatio_temporal_scaling=(True, True, False, False),
            decoder_inject_noise=(False,) * 5,
            upsample_residual=(False,) * 4,
            upsample_factor=(1,) * 4,
            patch_size=1,
            patch_size_t=1,
        ),
    )
    # The released LTX-Video scheduler config: resolution-dependent shift, terminal sigma 0.1.
    scheduler = FlowMatchEulerDiscreteScheduler(
        base_image_seq_len=1024,
        base_shift=0.95,
        max_image_seq_len=4096,
        max_shift=2.05,
        shift=1.0,
        shift_terminal=0.1,
        use_dynamic_shifting=True,
    )
    return quiet(
        LTXPipeline(
            scheduler=scheduler,
            vae=cast(vae, dtype),
            text_encoder=None,
            tokenizer=None,
            transformer=tiny_ltx_transformer(seed, dtype),
        )
    )


def tiny_ltx_prompt_embeds(batch: int = 1, seq: int = 8, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict:
    """Random prompt and negative-prompt embeddings (batch, seq, 16) and attention masks for `tiny_ltx_pipeline`.

    The pipeline requires the masks with embeddings; both prompts end in 2 padding tokens, as T5's tokenizer pads
    them. The negative ones are required because the default `guidance_scale=3` enables CFG.

    Args:
        batch (`int`): Batch size.
        seq (`int`): Number of text tokens (at least 3).
        seed (`int`): Seed of the local generator.
        dtype (`torch.dtype`): Embedding dtype (LTXPipeline casts the latents to it).
    """
    gen = torch.Generator().manual_seed(seed)
    return {
        "prompt_embeds": embeds(gen, batch, seq, LTX_TEXT_DIM, dtype),
        "prompt_attention_mask": padding_mask(batch, seq, 2),
        "negative_prompt_embeds": embeds(gen, batch, seq, LTX_TEXT_DIM, dtype),
        "negative_prompt_attention_mask": padding_mask(batch, seq, 2),
    }
