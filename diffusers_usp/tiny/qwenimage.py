"""Tiny Qwen-Image (text-to-image layout): transformer, pipeline and prompt embeddings."""

import torch
from diffusers import (
    AutoencoderKLQwenImage,
    FlowMatchEulerDiscreteScheduler,
    QwenImageControlNetModel,
    QwenImageControlNetPipeline,
    QwenImagePipeline,
    QwenImageTransformer2DModel,
)

from ._common import build_transformer, cast, embeds, padding_mask, quiet, seeded, unzero

# Inner dim 4 * 16 = 64; rope axes (4, 6, 6) must sum to the head dim (16).
QWENIMAGE_TEXT_DIM = 16  # joint_attention_dim (Qwen2.5-VL width, 3584, in the real model)
QWENIMAGE_Z_DIM = 4  # tiny VAE latent channels; the pipeline packs 2x2 patches -> in_channels = 16


def tiny_qwenimage_transformer(
    seed: int = 0, dtype: torch.dtype = torch.float32, **overrides
) -> QwenImageTransformer2DModel:
    """Tiny random `QwenImageTransformer2DModel` (2 blocks, 4 heads of dim 16, no guidance embedding).

    Args:
        seed (`int`): Seed for the weight initialisation.
        dtype (`torch.dtype`): Parameter dtype.
        overrides: Config values to change (e.g. `zero_cond_t=True` for the edit layout); `axes_dims_rope` must sum
            to `attention_head_dim`.
    """
    config = dict(
        patch_size=2,
        in_channels=4 * QWENIMAGE_Z_DIM,
        out_channels=QWENIMAGE_Z_DIM,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=4,
        joint_attention_dim=QWENIMAGE_TEXT_DIM,
        axes_dims_rope=(4, 6, 6),
    )
    return build_transformer(QwenImageTransformer2DModel, config, overrides, seed, dtype)


def tiny_qwenimage_controlnet(seed: int = 0, dtype: torch.dtype = torch.float32) -> QwenImageControlNetModel:
    """Tiny random `QwenImageControlNetModel` for `tiny_qwenimage_transformer` (1 block, 4 heads of dim 16).

    Its residual projections and its condition embedder, zero in diffusers, are random here too.

    Args:
        seed (`int`): Seed for the weight initialisation.
        dtype (`torch.dtype`): Parameter dtype.
    """

    def build() -> QwenImageControlNetModel:
        controlnet = QwenImageControlNetModel(
            patch_size=2,
            in_channels=4 * QWENIMAGE_Z_DIM,
            out_channels=QWENIMAGE_Z_DIM,
            num_layers=1,
            attention_head_dim=16,
            num_attention_heads=4,
            joint_attention_dim=QWENIMAGE_TEXT_DIM,
            axes_dims_rope=(4, 6, 6),
        )
        unzero([*controlnet.controlnet_blocks.parameters(), *controlnet.controlnet_x_embedder.parameters()])
        return controlnet

    return cast(seeded(seed, build), dtype)


def tiny_qwenimage_pipeline(seed: int = 0, dtype: torch.dtype = torch.float32) -> QwenImagePipeline:
    """Tiny `QwenImagePipeline` without text encoder; image height/width must be multiples of 8.

    The VAE downsamples 4x (`pipe.vae_scale_factor == 4`) and the pipeline packs 2x2 latent patches, so a 96x96 image
    gives 24x24 latents, i.e. 12x12 = 144 image tokens.

    Args:
        seed (`int`): Seed for the weight initialisation (the VAE uses `seed + 1`).
        dtype (`torch.dtype`): Parameter dtype of the transformer and VAE.
    """
    vae = seeded(
        seed + 1,
        lambda: AutoencoderKLQwenImage(
            base_dim=8,
            z_dim=QWENIMAGE_Z_DIM,
            dim_mult=[1, 1, 1],
            num_res_blocks=1,
            temperal_downsample=[False, True],
            latents_mean=[0.0] * QWENIMAGE_Z_DIM,
            latents_std=[1.0] * QWENIMAGE_Z_DIM,  # defaults have 16 entries
        ),
    )
    # The released Qwen-Image scheduler config: resolution-dependent exponential shift.
    scheduler = FlowMatchEulerDiscreteScheduler(
        base_image_seq_len=256,
        base_shift=0.5,
        max_image_seq_len=8192,
        max_shift=0.9,
        shift=1.0,
        shift_terminal=0.02,
        time_shift_type="exponential",
        use_dynamic_shifting=True,
    )
    return quiet(
        QwenImagePipeline(
            scheduler=scheduler,
            vae=cast(vae, dtype),
            text_encoder=None,
            tokenizer=None,
            transformer=tiny_qwenimage_transformer(seed, dtype),
        )
    )


def tiny_qwenimage_controlnet_pipeline(
    seed: int = 0, dtype: torch.dtype = torch.float32
) -> QwenImageControlNetPipeline:
    """Tiny `QwenImageControlNetPipeline`: `tiny_qwenimage_pipeline`'s components plus `tiny_qwenimage_controlnet`
    (weights from `seed + 2`). Pass `control_image` (a PIL image, or a `[B, 3, H, W]` tensor in [0, 1]).

    Args:
        seed (`int`): Seed for the weight initialisation.
        dtype (`torch.dtype`): Parameter dtype of the transformer, ControlNet and VAE.
    """
    controlnet = tiny_qwenimage_controlnet(seed + 2, dtype)
    components = tiny_qwenimage_pipeline(seed, dtype).components
    return quiet(QwenImageControlNetPipeline(**components, controlnet=controlnet))


def tiny_qwenimage_prompt_embeds(
    batch: int = 1, seq: int = 10, negative_seq: int = 5, seed: int = 0, dtype: torch.dtype = torch.float32
) -> dict:
    """Random prompt and negative-prompt embeddings and their padding masks for `tiny_qwenimage_pipeline`.

    The negative prompt turns on the pipeline's true CFG (`true_cfg_scale > 1`), a second forward per step. The
    prompt ends in 3 padding tokens and the negative prompt in 1, as Qwen-Image's encoder pads a batch (a mask with
    no padding is dropped by the pipeline, so these keep the masked attention path live). With the defaults the two
    forwards have different text lengths: 10 divides by 2 and 5 does not, so on 2 ranks one forward shards its text
    and the other keeps it replicated.

    Args:
        batch (`int`): Batch size.
        seq (`int`): Number of prompt tokens (at least 4).
        negative_seq (`int`): Number of negative-prompt tokens (at least 2).
        seed (`int`): Seed of the local generator.
        dtype (`torch.dtype`): Embedding dtype; should match the pipeline's (the latents take `prompt_embeds`' dtype).
    """
    gen = torch.Generator().manual_seed(seed)
    return {
        "prompt_embeds": embeds(gen, batch, seq, QWENIMAGE_TEXT_DIM, dtype),
        "prompt_embeds_mask": padding_mask(batch, seq, 3),
        "negative_prompt_embeds": embeds(gen, batch, negative_seq, QWENIMAGE_TEXT_DIM, dtype),
        "negative_prompt_embeds_mask": padding_mask(batch, negative_seq, 1),
    }
