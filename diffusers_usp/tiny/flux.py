"""Tiny Flux (FLUX.1-dev layout): transformer, pipeline, prompt embeddings and transformer inputs."""

import torch
from diffusers import (
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    FluxControlNetModel,
    FluxControlNetPipeline,
    FluxPipeline,
    FluxTransformer2DModel,
)

from ._common import TWO_BLOCK_VAE, build_transformer, cast, quiet, randn, seeded, unzero

# Inner dim 4 * 16 = 64; rope axes (4, 6, 6) must sum to the head dim (16).
FLUX_TEXT_DIM = 32  # joint_attention_dim (T5 width in the real model)
FLUX_POOLED_DIM = 32  # pooled_projection_dim (CLIP width in the real model)
FLUX_LATENT_CHANNELS = 4  # tiny VAE latent channels; FluxPipeline packs 2x2 patches -> in_channels = 16


def tiny_flux_transformer(seed: int = 0, dtype: torch.dtype = torch.float32, **overrides) -> FluxTransformer2DModel:
    """Tiny random `FluxTransformer2DModel` (2 double + 2 single blocks, 4 heads of dim 16, FLUX.1-dev style guidance).

    Args:
        seed (`int`): Seed for the weight initialisation.
        dtype (`torch.dtype`): Parameter dtype.
        overrides: Config values to change (e.g. `num_attention_heads=6`); `axes_dims_rope` must sum to
            `attention_head_dim`.
    """
    config = dict(
        patch_size=1,
        in_channels=4 * FLUX_LATENT_CHANNELS,
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=4,
        joint_attention_dim=FLUX_TEXT_DIM,
        pooled_projection_dim=FLUX_POOLED_DIM,
        guidance_embeds=True,
        axes_dims_rope=(4, 6, 6),
    )
    return build_transformer(FluxTransformer2DModel, config, overrides, seed, dtype)


def tiny_flux_controlnet(
    seed: int = 0, dtype: torch.dtype = torch.float32, num_mode: int | None = None
) -> FluxControlNetModel:
    """Tiny random `FluxControlNetModel` for `tiny_flux_transformer` (1 double + 1 single block).

    Its residual projections and its condition embedder, zero in diffusers, are random here too.

    Args:
        seed (`int`): Seed for the weight initialisation.
        dtype (`torch.dtype`): Parameter dtype.
        num_mode (`int`, *optional*): Control modes of a union ControlNet, which prepends a mode token to the text.
    """

    def build() -> FluxControlNetModel:
        controlnet = FluxControlNetModel(
            patch_size=1,
            in_channels=4 * FLUX_LATENT_CHANNELS,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=4,
            joint_attention_dim=FLUX_TEXT_DIM,
            pooled_projection_dim=FLUX_POOLED_DIM,
            guidance_embeds=True,
            axes_dims_rope=(4, 6, 6),
            num_mode=num_mode,
        )
        zeroed = [*controlnet.controlnet_blocks, *controlnet.controlnet_single_blocks, controlnet.controlnet_x_embedder]
        unzero(linear.weight for linear in zeroed)
        return controlnet

    return cast(seeded(seed, build), dtype)


def tiny_flux_pipeline(seed: int = 0, dtype: torch.dtype = torch.float32) -> FluxPipeline:
    """Tiny `FluxPipeline` without text encoders; image height/width must be multiples of 4.

    The VAE has two blocks, so `pipe.vae_scale_factor == 2` and the pipeline needs sizes divisible by
    `2 * vae_scale_factor = 4`; a 64x64 image gives 32x32 latents, i.e. 16x16 = 256 packed image tokens.

    Args:
        seed (`int`): Seed for the weight initialisation (the VAE uses `seed + 1`).
        dtype (`torch.dtype`): Parameter dtype of the transformer and VAE.
    """
    return quiet(
        FluxPipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(),
            vae=_flux_vae(seed + 1, dtype),
            text_encoder=None,
            tokenizer=None,
            text_encoder_2=None,
            tokenizer_2=None,
            transformer=tiny_flux_transformer(seed, dtype),
        )
    )


def _flux_vae(seed: int, dtype: torch.dtype) -> AutoencoderKL:
    """The tiny FLUX.1 VAE (2 blocks, so `vae_scale_factor == 2`), which Chroma's pipeline uses too."""
    vae = seeded(
        seed,
        lambda: AutoencoderKL(
            **TWO_BLOCK_VAE,
            latent_channels=FLUX_LATENT_CHANNELS,
            sample_size=64,
            shift_factor=0.0609,
            scaling_factor=1.5035,  # FLUX.1 VAE values; keeps the latent (un)scaling path live
        ),
    )
    return cast(vae, dtype)


def tiny_flux_controlnet_pipeline(
    seed: int = 0, dtype: torch.dtype = torch.float32, num_mode: int | None = None
) -> FluxControlNetPipeline:
    """Tiny `FluxControlNetPipeline`: `tiny_flux_pipeline`'s components plus `tiny_flux_controlnet` (weights from
    `seed + 2`). Pass `control_image` (a PIL image, or a `[B, 3, H, W]` tensor in [0, 1], of the output size), and
    `control_mode` for a union ControlNet.

    Args:
        seed (`int`): Seed for the weight initialisation.
        dtype (`torch.dtype`): Parameter dtype of the transformer, ControlNet and VAE.
        num_mode (`int`, *optional*): Control modes, for a union ControlNet.
    """
    controlnet = tiny_flux_controlnet(seed + 2, dtype, num_mode)
    return quiet(FluxControlNetPipeline(**tiny_flux_pipeline(seed, dtype).components, controlnet=controlnet))


def tiny_flux_prompt_embeds(batch: int = 1, seq: int = 8, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict:
    """Random `prompt_embeds` (batch, seq, 32) and `pooled_prompt_embeds` (batch, 32) for `tiny_flux_pipeline`.

    Args:
        batch (`int`): Batch size.
        seq (`int`): Number of text tokens.
        seed (`int`): Seed of the local generator.
        dtype (`torch.dtype`): Embedding dtype; should match the pipeline's (FluxPipeline derives the latent dtype
            from `prompt_embeds`).
    """
    gen = torch.Generator().manual_seed(seed)
    return {
        "prompt_embeds": torch.randn(batch, seq, FLUX_TEXT_DIM, generator=gen).to(dtype),
        "pooled_prompt_embeds": torch.randn(batch, FLUX_POOLED_DIM, generator=gen).to(dtype),
    }


def flux_transformer_inputs(
    transformer: FluxTransformer2DModel,
    batch: int = 1,
    height: int = 8,
    width: int = 8,
    text_len: int = 8,
    seed: int = 0,
) -> dict:
    """Keyword arguments for `transformer(**kwargs, return_dict=False)`, on the transformer's device and dtype.

    Args:
        transformer (`FluxTransformer2DModel`): Model whose config sets the channel counts.
        batch (`int`): Batch size.
        height (`int`): Height in packed latent *tokens*; the image sequence length is `height * width`.
        width (`int`): Width in packed latent tokens.
        text_len (`int`): Number of text tokens.
        seed (`int`): Seed of the local generator.
    """
    cfg, gen = transformer.config, torch.Generator().manual_seed(seed)
    img_ids = torch.zeros(height, width, 3)  # (0, row, col) as in FluxPipeline._prepare_latent_image_ids
    img_ids[..., 1] = torch.arange(height)[:, None]
    img_ids[..., 2] = torch.arange(width)[None, :]
    kwargs = {
        "hidden_states": randn(gen, batch, height * width, cfg.in_channels, ref=transformer),
        "encoder_hidden_states": randn(gen, batch, text_len, cfg.joint_attention_dim, ref=transformer),
        "pooled_projections": randn(gen, batch, cfg.pooled_projection_dim, ref=transformer),
        # FluxPipeline passes t / 1000, i.e. a sigma in [0, 1].
        "timestep": torch.rand(batch, generator=gen).to(device=transformer.device, dtype=transformer.dtype),
        "img_ids": img_ids.reshape(-1, 3).to(transformer.device, transformer.dtype),
        "txt_ids": torch.zeros(text_len, 3, device=transformer.device, dtype=transformer.dtype),
    }
    if cfg.guidance_embeds:
        kwargs["guidance"] = torch.full((batch,), 3.5, device=transformer.device, dtype=torch.float32)
    return kwargs
