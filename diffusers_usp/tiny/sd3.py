"""Tiny Stable Diffusion 3.5 (MMDiT-X layout): transformer, pipeline and prompt embeddings."""

import torch
from diffusers import (
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    SD3ControlNetModel,
    SD3Transformer2DModel,
    StableDiffusion3ControlNetPipeline,
    StableDiffusion3Pipeline,
)

from ._common import TWO_BLOCK_VAE, build_transformer, cast, embeds, quiet, seeded, unzero

# Inner dim 4 * 8 = 32 = caption_projection_dim, as in the real model (24 * 64 = 1536).
SD3_TEXT_DIM = 16  # joint_attention_dim (CLIP-L/G + T5 width, 4096, in the real model)
SD3_POOLED_DIM = 16  # pooled_projection_dim (CLIP-L + CLIP-G pooled, 2048, in the real model)
SD3_LATENT_CHANNELS = 4  # tiny VAE latent channels = transformer in/out channels (16 in the real model)


def tiny_sd3_transformer(seed: int = 0, dtype: torch.dtype = torch.float32, **overrides) -> SD3Transformer2DModel:
    """Tiny random `SD3Transformer2DModel` in the SD3.5 layout (2 blocks, 4 heads of dim 8, patch size 2).

    As in SD3.5, the first block has the extra image-only self-attention (`dual_attention_layers`) and q/k RMS norms,
    and the last block is `context_pre_only`. `pos_embed_max_size=32` allows up to 32x32 patches (128x128 pixels
    through the tiny VAE); `sample_size=24` makes the pipeline's default size 48x48.

    Args:
        seed (`int`): Seed for the weight initialisation.
        dtype (`torch.dtype`): Parameter dtype.
        overrides: Config values to change (e.g. `num_attention_heads=6`).
    """
    config = dict(
        sample_size=24,
        patch_size=2,
        in_channels=SD3_LATENT_CHANNELS,
        out_channels=SD3_LATENT_CHANNELS,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        joint_attention_dim=SD3_TEXT_DIM,
        caption_projection_dim=32,
        pooled_projection_dim=SD3_POOLED_DIM,
        pos_embed_max_size=32,
        dual_attention_layers=(0,),
        qk_norm="rms_norm",
    )
    return build_transformer(SD3Transformer2DModel, config, overrides, seed, dtype)


def tiny_sd3_controlnet(seed: int = 0, dtype: torch.dtype = torch.float32) -> SD3ControlNetModel:
    """Tiny random `SD3ControlNetModel` for `tiny_sd3_transformer` (1 joint block, 4 heads of dim 8).

    Its residual projections and its condition embedder, zero in diffusers, are random here too.

    Args:
        seed (`int`): Seed for the weight initialisation.
        dtype (`torch.dtype`): Parameter dtype.
    """

    def build() -> SD3ControlNetModel:
        controlnet = SD3ControlNetModel(
            sample_size=24,
            patch_size=2,
            in_channels=SD3_LATENT_CHANNELS,
            out_channels=SD3_LATENT_CHANNELS,
            num_layers=1,
            attention_head_dim=8,
            num_attention_heads=4,
            joint_attention_dim=SD3_TEXT_DIM,
            caption_projection_dim=32,
            pooled_projection_dim=SD3_POOLED_DIM,
            pos_embed_max_size=32,
            qk_norm="rms_norm",
        )
        unzero([*controlnet.controlnet_blocks.parameters(), *controlnet.pos_embed_input.parameters()])
        return controlnet

    return cast(seeded(seed, build), dtype)


def tiny_sd3_pipeline(seed: int = 0, dtype: torch.dtype = torch.float32) -> StableDiffusion3Pipeline:
    """Tiny `StableDiffusion3Pipeline` without text encoders; image height/width must be multiples of 4.

    The VAE has two blocks (`pipe.vae_scale_factor == 2`) and the transformer patches 2x2 latents, so a 48x48 image
    gives 24x24 latents, i.e. 12x12 = 144 image tokens.

    Args:
        seed (`int`): Seed for the weight initialisation (the VAE uses `seed + 1`).
        dtype (`torch.dtype`): Parameter dtype of the transformer and VAE.
    """
    vae = seeded(
        seed + 1,
        lambda: AutoencoderKL(
            **TWO_BLOCK_VAE,
            latent_channels=SD3_LATENT_CHANNELS,
            sample_size=64,
            shift_factor=0.0609,
            scaling_factor=1.5305,  # SD3 VAE values; keeps the latent (un)scaling path live
        ),
    )
    return quiet(
        StableDiffusion3Pipeline(
            transformer=tiny_sd3_transformer(seed, dtype),
            vae=cast(vae, dtype),
            scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),  # the released SD3/SD3.5 scheduler config
            text_encoder=None,
            tokenizer=None,
            text_encoder_2=None,
            tokenizer_2=None,
            text_encoder_3=None,
            tokenizer_3=None,
        )
    )


def tiny_sd3_controlnet_pipeline(
    seed: int = 0, dtype: torch.dtype = torch.float32
) -> StableDiffusion3ControlNetPipeline:
    """Tiny `StableDiffusion3ControlNetPipeline`: `tiny_sd3_pipeline`'s components plus `tiny_sd3_controlnet`
    (weights from `seed + 2`). Pass `control_image` (a PIL image, or a `[B, 3, H, W]` tensor in [0, 1]).

    Args:
        seed (`int`): Seed for the weight initialisation.
        dtype (`torch.dtype`): Parameter dtype of the transformer, ControlNet and VAE.
    """
    controlnet = tiny_sd3_controlnet(seed + 2, dtype)
    components = tiny_sd3_pipeline(seed, dtype).components
    return quiet(StableDiffusion3ControlNetPipeline(**components, controlnet=controlnet))


def tiny_sd3_prompt_embeds(batch: int = 1, seq: int = 10, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict:
    """Random prompt and negative-prompt embeddings (batch, seq, 16), pooled (batch, 16), for `tiny_sd3_pipeline`.

    The negative ones are required because the pipeline's guidance (`guidance_scale > 1`) would otherwise encode an
    empty negative prompt with the (missing) text encoders. The default 10 text tokens divide by 2 but not by 3 or 4,
    so 2 ranks shard the text with the image and 3 or 4 keep it replicated.

    Args:
        batch (`int`): Batch size.
        seq (`int`): Number of text tokens.
        seed (`int`): Seed of the local generator.
        dtype (`torch.dtype`): Embedding dtype; should match the pipeline's (the latents take `prompt_embeds`' dtype).
    """
    gen = torch.Generator().manual_seed(seed)
    return {
        "prompt_embeds": embeds(gen, batch, seq, SD3_TEXT_DIM, dtype),
        "negative_prompt_embeds": embeds(gen, batch, seq, SD3_TEXT_DIM, dtype),
        "pooled_prompt_embeds": torch.randn(batch, SD3_POOLED_DIM, generator=gen).to(dtype),
        "negative_pooled_prompt_embeds": torch.randn(batch, SD3_POOLED_DIM, generator=gen).to(dtype),
    }
