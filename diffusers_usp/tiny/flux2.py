"""Tiny Flux.2 (FLUX.2-dev layout): transformer, pipeline and prompt embeddings."""

import torch
from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2Pipeline, Flux2Transformer2DModel

from ._common import TWO_BLOCK_VAE, build_transformer, cast, embeds, quiet, randn, seeded

# Inner dim 4 * 16 = 64; the 4 rope axes (t, h, w, l) must sum to the head dim (16).
FLUX2_TEXT_DIM = 32  # joint_attention_dim (3 stacked Mistral layers, 15360 wide, in the real model)
FLUX2_LATENT_CHANNELS = 4  # tiny VAE latent channels; Flux2Pipeline packs 2x2 patches -> in_channels = 16


def tiny_flux2_transformer(seed: int = 0, dtype: torch.dtype = torch.float32, **overrides) -> Flux2Transformer2DModel:
    """Tiny random `Flux2Transformer2DModel` (2 double + 2 single blocks, 4 heads of dim 16, guidance embedding).

    Args:
        seed (`int`): Seed for the weight initialisation.
        dtype (`torch.dtype`): Parameter dtype.
        overrides: Config values to change; `axes_dims_rope` must sum to `attention_head_dim`.
    """
    config = dict(
        patch_size=1,
        in_channels=4 * FLUX2_LATENT_CHANNELS,
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=4,
        joint_attention_dim=FLUX2_TEXT_DIM,
        timestep_guidance_channels=32,
        axes_dims_rope=(4, 4, 4, 4),
    )
    return build_transformer(Flux2Transformer2DModel, config, overrides, seed, dtype)


def tiny_flux2_pipeline(seed: int = 0, dtype: torch.dtype = torch.float32) -> Flux2Pipeline:
    """Tiny `Flux2Pipeline` without its text encoder (Mistral 3, 24B in the real model); pass `prompt_embeds`.

    The VAE has two blocks, so `pipe.vae_scale_factor == 2` and sizes must divide by `2 * vae_scale_factor = 4`: a
    48x48 image gives 24x24 latents, i.e. 12x12 = 144 packed image tokens.

    Args:
        seed (`int`): Seed for the weight initialisation (the VAE uses `seed + 1`).
        dtype (`torch.dtype`): Parameter dtype of the transformer and VAE.
    """
    vae = seeded(
        seed + 1,
        lambda: AutoencoderKLFlux2(
            **TWO_BLOCK_VAE,
            latent_channels=FLUX2_LATENT_CHANNELS,
            sample_size=48,
        ),
    )
    return quiet(
        Flux2Pipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(),
            vae=cast(vae, dtype),
            text_encoder=None,
            tokenizer=None,
            transformer=tiny_flux2_transformer(seed, dtype),
        )
    )


def tiny_flux2_prompt_embeds(batch: int = 1, seq: int = 8, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict:
    """Random `prompt_embeds` (batch, seq, 32) for `tiny_flux2_pipeline`.

    Args:
        batch (`int`): Batch size.
        seq (`int`): Number of text tokens.
        seed (`int`): Seed of the local generator.
        dtype (`torch.dtype`): Embedding dtype.
    """
    return {"prompt_embeds": embeds(torch.Generator().manual_seed(seed), batch, seq, FLUX2_TEXT_DIM, dtype)}


def flux2_transformer_inputs(
    transformer: Flux2Transformer2DModel,
    batch: int = 1,
    height: int = 8,
    width: int = 8,
    text_len: int = 8,
    seed: int = 0,
) -> dict:
    """Keyword arguments for `transformer(**kwargs, return_dict=False)`, on the transformer's device and dtype, with
    the batched `[B, S, 4]` position ids (t, h, w, l) that `Flux2Pipeline` passes.

    Args:
        transformer (`Flux2Transformer2DModel`): Model whose config sets the channel counts.
        batch (`int`): Batch size.
        height (`int`): Height in packed latent *tokens*; the image sequence length is `height * width`.
        width (`int`): Width in packed latent tokens.
        text_len (`int`): Number of text tokens.
        seed (`int`): Seed of the local generator.
    """
    cfg, gen = transformer.config, torch.Generator().manual_seed(seed)
    img_ids = torch.zeros(height, width, 4)
    img_ids[..., 1] = torch.arange(height)[:, None]
    img_ids[..., 2] = torch.arange(width)[None, :]
    txt_ids = torch.zeros(text_len, 4)
    txt_ids[:, 3] = torch.arange(text_len)
    device, dtype = transformer.device, transformer.dtype
    return {
        "hidden_states": randn(gen, batch, height * width, cfg.in_channels, ref=transformer),
        "encoder_hidden_states": randn(gen, batch, text_len, cfg.joint_attention_dim, ref=transformer),
        "timestep": torch.rand(batch, generator=gen).to(device=device, dtype=dtype),
        "img_ids": img_ids.reshape(1, -1, 4).expand(batch, -1, -1).to(device, dtype),
        "txt_ids": txt_ids.expand(batch, -1, -1).to(device, dtype),
        "guidance": torch.full((batch,), 4.0, device=device, dtype=torch.float32),
    }
