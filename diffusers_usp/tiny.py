"""Tiny random-weight diffusers models and pipelines, built fully offline.

Used by the demo examples and the test-suite. Nothing is downloaded; weights are
deterministic functions of ``seed`` and the global RNG state is never touched.
Pipelines have no text encoders/tokenizers: pass the ``*_prompt_embeds`` helpers'
output to the pipeline call instead of a ``prompt``.
"""

from typing import Callable, TypeVar

import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLWan,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    UniPCMultistepScheduler,
    WanPipeline,
    WanTransformer3DModel,
)

T = TypeVar("T")

# Flux: inner dim 4 * 16 = 64; rope axes (4, 6, 6) must sum to the head dim (16).
FLUX_TEXT_DIM = 32  # joint_attention_dim (T5 width in the real model)
FLUX_POOLED_DIM = 32  # pooled_projection_dim (CLIP width in the real model)
FLUX_LATENT_CHANNELS = 4  # tiny VAE latent channels; FluxPipeline packs 2x2 patches -> in_channels = 16
# Wan: inner dim 4 * 16 = 64; the rope splits head dim 16 into t=8, h=4, w=4.
WAN_TEXT_DIM = 32  # text_dim (UMT5 width in the real model)
WAN_Z_DIM = 4  # tiny Wan VAE latent channels = transformer in/out channels


def _seeded(seed: int, build: Callable[[], T]) -> T:
    """Runs ``build`` with the CPU RNG seeded, restoring the global RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):  # devices=[]: do not touch (or initialise) CUDA RNGs
        torch.manual_seed(seed)
        return build()


def _cast(model: T, dtype: torch.dtype) -> T:
    """Casts parameters the way `from_pretrained(torch_dtype=dtype)` does and returns the model in eval mode.

    Parameters under the class's `_keep_in_fp32_modules` (e.g. Wan's norms, rope, time embedder) stay float32.
    Plain `model.to(dtype)` would cast them too and logs a warning on every call, even for float32.
    """
    keep = model._keep_in_fp32_modules or []
    for name, param in model.named_parameters():
        param.data = param.data.to(torch.float32 if any(m in name.split(".") for m in keep) else dtype)
    return model.eval()


def _randn(gen: torch.Generator, *shape: int, ref: torch.nn.Module) -> torch.Tensor:
    """Standard-normal tensor drawn on CPU from ``gen``, then moved to ``ref``'s device and dtype."""
    return torch.randn(*shape, generator=gen).to(device=ref.device, dtype=ref.dtype)


def tiny_flux_transformer(seed: int = 0, dtype: torch.dtype = torch.float32, **overrides) -> FluxTransformer2DModel:
    """Tiny random `FluxTransformer2DModel` (2 double + 2 single blocks, 4 heads of dim 16, FLUX.1-dev style guidance).

    Args:
        seed (`int`): Seed for the weight initialisation.
        dtype (`torch.dtype`): Parameter dtype.
        overrides: Config values to change (e.g. `num_attention_heads=6`); `axes_dims_rope` must sum to
            `attention_head_dim`.
    """
    config = dict(
        patch_size=1, in_channels=4 * FLUX_LATENT_CHANNELS, num_layers=2, num_single_layers=2,
        attention_head_dim=16, num_attention_heads=4, joint_attention_dim=FLUX_TEXT_DIM,
        pooled_projection_dim=FLUX_POOLED_DIM, guidance_embeds=True, axes_dims_rope=(4, 6, 6),
    )
    model = _seeded(seed, lambda: FluxTransformer2DModel(**{**config, **overrides}))
    return _cast(model, dtype)


def tiny_wan_transformer(seed: int = 0, dtype: torch.dtype = torch.float32, **overrides) -> WanTransformer3DModel:
    """Tiny random `WanTransformer3DModel` (2 blocks, 4 heads of dim 16, patch size (1, 2, 2)).

    Args:
        seed (`int`): Seed for the weight initialisation.
        dtype (`torch.dtype`): Parameter dtype.
        overrides: Config values to change (e.g. `num_attention_heads=6`).
    """
    config = dict(
        patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=16, in_channels=WAN_Z_DIM,
        out_channels=WAN_Z_DIM, text_dim=WAN_TEXT_DIM, freq_dim=32, ffn_dim=64, num_layers=2,
    )
    model = _seeded(seed, lambda: WanTransformer3DModel(**{**config, **overrides}))
    return _cast(model, dtype)


def tiny_flux_pipeline(seed: int = 0, dtype: torch.dtype = torch.float32) -> FluxPipeline:
    """Tiny `FluxPipeline` without text encoders; image height/width must be multiples of 4.

    The VAE has two blocks, so `pipe.vae_scale_factor == 2` and the pipeline needs sizes divisible by
    `2 * vae_scale_factor = 4`; a 64x64 image gives 32x32 latents, i.e. 16x16 = 256 packed image tokens.

    Args:
        seed (`int`): Seed for the weight initialisation (the VAE uses `seed + 1`).
        dtype (`torch.dtype`): Parameter dtype of the transformer and VAE.
    """
    vae = _seeded(seed + 1, lambda: AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
        latent_channels=FLUX_LATENT_CHANNELS, norm_num_groups=4, sample_size=64,
        shift_factor=0.0609, scaling_factor=1.5035,  # FLUX.1 VAE values; keeps the latent (un)scaling path live
    ))
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=_cast(vae, dtype),
        text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None,
        transformer=tiny_flux_transformer(seed, dtype),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


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


def tiny_wan_pipeline(seed: int = 0, dtype: torch.dtype = torch.float32) -> WanPipeline:
    """Tiny `WanPipeline` without text encoder; height/width must be multiples of 16, `num_frames` of form 4k+1.

    The VAE keeps Wan's 8x spatial / 4x temporal compression, so a 32x32, 5-frame video has 2x4x4 latents,
    i.e. 2 * 2 * 2 = 8 transformer tokens after the (1, 2, 2) patching.

    Args:
        seed (`int`): Seed for the weight initialisation (the VAE uses `seed + 1`).
        dtype (`torch.dtype`): Parameter dtype of the transformer and VAE.
    """
    vae = _seeded(seed + 1, lambda: AutoencoderKLWan(
        base_dim=3, z_dim=WAN_Z_DIM, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True],
        latents_mean=[0.0] * WAN_Z_DIM, latents_std=[1.0] * WAN_Z_DIM,  # defaults have 16 entries (z_dim=16)
    ))
    # Same scheduler settings as the released Wan2.1 T2V checkpoints.
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    pipe = WanPipeline(
        tokenizer=None, text_encoder=None, vae=_cast(vae, dtype), scheduler=scheduler,
        transformer=tiny_wan_transformer(seed, dtype),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_wan_prompt_embeds(batch: int = 1, seq: int = 8, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict:
    """Random `prompt_embeds` and `negative_prompt_embeds` (batch, seq, 32) for `tiny_wan_pipeline`.

    `negative_prompt_embeds` are required because WanPipeline's default `guidance_scale=5.0` enables CFG and
    would otherwise try to encode an empty negative prompt with the (missing) tokenizer.

    Args:
        batch (`int`): Batch size.
        seq (`int`): Number of text tokens.
        seed (`int`): Seed of the local generator.
        dtype (`torch.dtype`): Embedding dtype (WanPipeline casts them to the transformer dtype anyway).
    """
    gen = torch.Generator().manual_seed(seed)
    return {
        "prompt_embeds": torch.randn(batch, seq, WAN_TEXT_DIM, generator=gen).to(dtype),
        "negative_prompt_embeds": torch.randn(batch, seq, WAN_TEXT_DIM, generator=gen).to(dtype),
    }


def flux_transformer_inputs(
    transformer: FluxTransformer2DModel, batch: int = 1, height: int = 8, width: int = 8, text_len: int = 8, seed: int = 0
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
        "hidden_states": _randn(gen, batch, height * width, cfg.in_channels, ref=transformer),
        "encoder_hidden_states": _randn(gen, batch, text_len, cfg.joint_attention_dim, ref=transformer),
        "pooled_projections": _randn(gen, batch, cfg.pooled_projection_dim, ref=transformer),
        # FluxPipeline passes t / 1000, i.e. a sigma in [0, 1].
        "timestep": torch.rand(batch, generator=gen).to(device=transformer.device, dtype=transformer.dtype),
        "img_ids": img_ids.reshape(-1, 3).to(transformer.device, transformer.dtype),
        "txt_ids": torch.zeros(text_len, 3, device=transformer.device, dtype=transformer.dtype),
    }
    if cfg.guidance_embeds:
        kwargs["guidance"] = torch.full((batch,), 3.5, device=transformer.device, dtype=torch.float32)
    return kwargs


def wan_transformer_inputs(
    transformer: WanTransformer3DModel, batch: int = 1, frames: int = 2, height: int = 8, width: int = 8,
    text_len: int = 8, seed: int = 0,
) -> dict:
    """Keyword arguments for `transformer(**kwargs, return_dict=False)`, on the transformer's device and dtype.

    Args:
        transformer (`WanTransformer3DModel`): Model whose config sets the channel counts.
        batch (`int`): Batch size.
        frames (`int`): Number of latent frames.
        height (`int`): Height in latent *pixels*; with patch size (1, 2, 2) the sequence length is
            `frames * (height // 2) * (width // 2)`, so height and width should be even.
        width (`int`): Width in latent pixels.
        text_len (`int`): Number of text tokens.
        seed (`int`): Seed of the local generator.
    """
    cfg, gen = transformer.config, torch.Generator().manual_seed(seed)
    return {
        "hidden_states": _randn(gen, batch, cfg.in_channels, frames, height, width, ref=transformer),
        # WanPipeline passes scheduler timesteps in [0, 1000).
        "timestep": torch.randint(0, 1000, (batch,), generator=gen).to(transformer.device),
        "encoder_hidden_states": _randn(gen, batch, text_len, cfg.text_dim, ref=transformer),
    }
