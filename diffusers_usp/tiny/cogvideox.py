"""Tiny CogVideoX-5b (rotary positions): transformer, pipeline and prompt embeddings."""

import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel

from ._common import build_transformer, cast, embeds, quiet, seeded

COGVIDEOX_TEXT_DIM = 16  # text_embed_dim (T5 width, 4096, in the real model)
COGVIDEOX_LATENT_CHANNELS = 4  # tiny VAE latent channels = transformer in/out channels (16 in the real model)


def tiny_cogvideox_transformer(
    seed: int = 0, dtype: torch.dtype = torch.float32, **overrides
) -> CogVideoXTransformer3DModel:
    """Tiny random `CogVideoXTransformer3DModel` in the 5B layout (2 blocks, 4 heads of dim 16, 3D rotary positions).

    `sample_height=4, sample_width=8` (latent pixels) make the pipeline's default size 32x64 and set the base grid its
    rotary crop region is computed from; `sample_frames=9` is the default frame count.

    Args:
        seed (`int`): Seed for the weight initialisation.
        dtype (`torch.dtype`): Parameter dtype.
        overrides: Config values to change (e.g. `num_attention_heads=6`).
    """
    config = dict(
        num_attention_heads=4,
        attention_head_dim=16,
        in_channels=COGVIDEOX_LATENT_CHANNELS,
        out_channels=COGVIDEOX_LATENT_CHANNELS,
        time_embed_dim=16,
        text_embed_dim=COGVIDEOX_TEXT_DIM,
        num_layers=2,
        sample_height=4,
        sample_width=8,
        sample_frames=9,
        patch_size=2,
        max_text_seq_length=10,
        use_rotary_positional_embeddings=True,
    )
    return build_transformer(CogVideoXTransformer3DModel, config, overrides, seed, dtype)


def tiny_cogvideox_pipeline(seed: int = 0, dtype: torch.dtype = torch.float32) -> CogVideoXPipeline:
    """Tiny `CogVideoXPipeline` without text encoder; height/width must be multiples of 16, `num_frames` of form 4k+1.

    The VAE keeps CogVideoX's 8x spatial / 4x temporal compression, so a 32x64, 9-frame video has 3x4x8 latents,
    i.e. 3 * 2 * 4 = 24 video tokens after the 2x2 patching.

    Args:
        seed (`int`): Seed for the weight initialisation (the VAE uses `seed + 1`).
        dtype (`torch.dtype`): Parameter dtype of the transformer and VAE.
    """
    vae = seeded(
        seed + 1,
        lambda: AutoencoderKLCogVideoX(
            block_out_channels=(8, 8, 8, 8),
            latent_channels=COGVIDEOX_LATENT_CHANNELS,
            layers_per_block=1,
            norm_num_groups=2,
            temporal_compression_ratio=4,
            scaling_factor=0.7,  # the CogVideoX-5b VAE value (2b: 1.15258426)
        ),
    )
    # The released CogVideoX-5b scheduler settings: v-prediction, zero terminal SNR, trailing timesteps.
    scheduler = CogVideoXDDIMScheduler(
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        clip_sample=False,
        snr_shift_scale=1.0,
    )
    return quiet(
        CogVideoXPipeline(
            tokenizer=None,
            text_encoder=None,
            vae=cast(vae, dtype),
            transformer=tiny_cogvideox_transformer(seed, dtype),
            scheduler=scheduler,
        )
    )


def tiny_cogvideox_prompt_embeds(
    batch: int = 1, seq: int = 10, seed: int = 0, dtype: torch.dtype = torch.float32
) -> dict:
    """Random `prompt_embeds` and `negative_prompt_embeds` (batch, seq, 16) for `tiny_cogvideox_pipeline`.

    The negative ones are required because the default `guidance_scale=6` enables CFG and would otherwise encode an
    empty negative prompt with the (missing) tokenizer. 10 text tokens divide by 2 but not by 3 or 4.

    Args:
        batch (`int`): Batch size.
        seq (`int`): Number of text tokens.
        seed (`int`): Seed of the local generator.
        dtype (`torch.dtype`): Embedding dtype; should match the pipeline's (the latents take `prompt_embeds`' dtype).
    """
    gen = torch.Generator().manual_seed(seed)
    return {
        "prompt_embeds": embeds(gen, batch, seq, COGVIDEOX_TEXT_DIM, dtype),
        "negative_prompt_embeds": embeds(gen, batch, seq, COGVIDEOX_TEXT_DIM, dtype),
    }
