"""Tiny Wan 2.1 (T2V layout): transformer, pipeline, prompt embeddings and transformer inputs."""

import torch
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel

from ._common import build_transformer, cast, quiet, randn, seeded

# Inner dim 4 * 16 = 64; the rope splits head dim 16 into t=8, h=4, w=4.
WAN_TEXT_DIM = 32  # text_dim (UMT5 width in the real model)
WAN_Z_DIM = 4  # tiny Wan VAE latent channels = transformer in/out channels


def tiny_wan_transformer(seed: int = 0, dtype: torch.dtype = torch.float32, **overrides) -> WanTransformer3DModel:
    """Tiny random `WanTransformer3DModel` (2 blocks, 4 heads of dim 16, patch size (1, 2, 2)).

    Args:
        seed (`int`): Seed for the weight initialisation.
        dtype (`torch.dtype`): Parameter dtype.
        overrides: Config values to change (e.g. `num_attention_heads=6`).
    """
    config = dict(
        patch_size=(1, 2, 2),
        num_attention_heads=4,
        attention_head_dim=16,
        in_channels=WAN_Z_DIM,
        out_channels=WAN_Z_DIM,
        text_dim=WAN_TEXT_DIM,
        freq_dim=32,
        ffn_dim=64,
        num_layers=2,
    )
    return build_transformer(WanTransformer3DModel, config, overrides, seed, dtype)


def tiny_wan_pipeline(seed: int = 0, dtype: torch.dtype = torch.float32) -> WanPipeline:
    """Tiny `WanPipeline` without text encoder; height/width must be multiples of 16, `num_frames` of form 4k+1.

    The VAE keeps Wan's 8x spatial / 4x temporal compression, so a 32x32, 5-frame video has 2x4x4 latents,
    i.e. 2 * 2 * 2 = 8 transformer tokens after the (1, 2, 2) patching.

    Args:
        seed (`int`): Seed for the weight initialisation (the VAE uses `seed + 1`).
        dtype (`torch.dtype`): Parameter dtype of the transformer and VAE.
    """
    vae = seeded(
        seed + 1,
        lambda: AutoencoderKLWan(
            base_dim=3,
            z_dim=WAN_Z_DIM,
            dim_mult=[1, 1, 1, 1],
            num_res_blocks=1,
            temperal_downsample=[False, True, True],
            latents_mean=[0.0] * WAN_Z_DIM,
            latents_std=[1.0] * WAN_Z_DIM,  # defaults have 16 entries (z_dim=16)
        ),
    )
    # Same scheduler settings as the released Wan2.1 T2V checkpoints.
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    return quiet(
        WanPipeline(
            tokenizer=None,
            text_encoder=None,
            vae=cast(vae, dtype),
            scheduler=scheduler,
            transformer=tiny_wan_transformer(seed, dtype),
        )
    )


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


def wan_transformer_inputs(
    transformer: WanTransformer3DModel,
    batch: int = 1,
    frames: int = 2,
    height: int = 8,
    width: int = 8,
    text_len: int = 8,
    seed: int = 0,
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
        "hidden_states": randn(gen, batch, cfg.in_channels, frames, height, width, ref=transformer),
        # WanPipeline passes scheduler timesteps in [0, 1000).
        "timestep": torch.randint(0, 1000, (batch,), generator=gen).to(transformer.device),
        "encoder_hidden_states": randn(gen, batch, text_len, cfg.text_dim, ref=transformer),
    }
