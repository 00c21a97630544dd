"""Tiny LTX-2 (audio and video): transformer, pipeline and prompt embeddings."""

import torch
from diffusers import (
    AutoencoderKLLTX2Audio,
    AutoencoderKLLTX2Video,
    FlowMatchEulerDiscreteScheduler,
    LTX2Pipeline,
    LTX2VideoTransformer3DModel,
)
from diffusers.pipelines.ltx2 import LTX2TextConnectors
from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder

from ._common import build_transformer, cast, embeds, padding_mask, quiet, seeded

LTX2_TEXT_DIM = 16  # the text encoder's width (Gemma 3's 3840 in the real model)
LTX2_TEXT_LAYERS = 3  # its hidden states stacked per token: layers + 1 (49 in the real model)
LTX2_LATENT_CHANNELS = 4  # tiny video VAE latent channels = transformer in/out channels (128 in the real model)


def tiny_ltx2_transformer(
    seed: int = 0, dtype: torch.dtype = torch.float32, **overrides
) -> LTX2VideoTransformer3DModel:
    """Tiny random `LTX2VideoTransformer3DModel`: 2 blocks, 2 video heads of dim 8, 2 audio heads of dim 4, per-head
    ("split") RoPE tables, and the perturbed attention of spatio-temporal guidance.

    Args:
        seed (`int`): Seed for the weight initialisation.
        dtype (`torch.dtype`): Parameter dtype.
        overrides: Config values to change (e.g. `num_layers=1`).
    """
    config = dict(
        in_channels=LTX2_LATENT_CHANNELS,
        out_channels=LTX2_LATENT_CHANNELS,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        audio_in_channels=4,
        audio_out_channels=4,
        audio_num_attention_heads=2,
        audio_attention_head_dim=4,
        audio_cross_attention_dim=8,
        num_layers=2,
        caption_channels=LTX2_TEXT_DIM,
        rope_double_precision=False,
        rope_type="split",
        perturbed_attn=True,
    )
    return build_transformer(LTX2VideoTransformer3DModel, config, overrides, seed, dtype)


def tiny_ltx2_pipeline(seed: int = 0, dtype: torch.dtype = torch.float32) -> LTX2Pipeline:
    """Tiny `LTX2Pipeline` without text encoder (its text connectors run on the given prompt embeddings).

    Height and width must be multiples of 32 and `num_frames` of form 4k+1. The video VAE compresses 4x in space and
    time (the real one: 32x and 8x), so 32x32, 9 frames is 3x8x8 = 192 video tokens; the audio latents run at 25 per
    second, so 9 frames at 9.375 fps (0.96 s) make 24 audio tokens. The audio VAE and the vocoder run whole on every
    rank.

    Args:
        seed (`int`): Seed for the weight initialisation (the other components use `seed + 1` to `seed + 4`).
        dtype (`torch.dtype`): Parameter dtype of the models.
    """
    connectors = seeded(
        seed + 1,
        lambda: LTX2TextConnectors(
            caption_channels=LTX2_TEXT_DIM,
            text_proj_in_factor=LTX2_TEXT_LAYERS,
            video_connector_num_attention_heads=2,
            video_connector_attention_head_dim=8,
            video_connector_num_layers=1,
            video_connector_num_learnable_registers=None,
            audio_connector_num_attention_heads=2,
            audio_connector_attention_head_dim=8,
            audio_connector_num_layers=1,
            audio_connector_num_learnable_registers=None,
            connector_rope_base_seq_len=32,
            rope_double_precision=False,
            rope_type="split",
        ),
    )
    vae = seeded(
        seed + 2,
        lambda: AutoencoderKLLTX2Video(
            latent_channels=LTX2_LATENT_CHANNELS,
            block_out_channels=(8, 8),
            decoder_block_out_channels=(8, 8),
            layers_per_block=(1, 1),
            decoder_layers_per_block=(1, 1, 1),
            spatio_temporal_scaling=(True, True),
            decoder_spatio_temporal_scaling=(True, True),
            decoder_inject_noise=(False,) * 3,
            downsample_type=("spatiotemporal",) * 2,
            upsample_residual=(False,) * 2,
            upsample_factor=(1,) * 2,
            timestep_conditioning=False,
            patch_size=1,
            patch_size_t=1,
            encoder_causal=True,
            decoder_causal=False,
        ),
    )
    vae.use_framewise_encoding = vae.use_framewise_decoding = False
    audio_vae = seeded(
        seed + 3,
        lambda: AutoencoderKLLTX2Audio(
            base_channels=4, output_channels=2, ch_mult=(1,), num_res_blocks=1, attn_resolutions=None, in_channels=2,
            resolution=32, latent_channels=2, norm_type="pixel", causality_axis="height", dropout=0.0,
            mid_block_add_attention=False, sample_rate=16000, mel_hop_length=160, is_causal=True, mel_bins=8,
        ),
    )  # fmt: skip
    vocoder = seeded(
        seed + 4,
        lambda: LTX2Vocoder(
            in_channels=2 * 8, hidden_channels=32, out_channels=2, upsample_kernel_sizes=[4, 4],
            upsample_factors=[2, 2], resnet_kernel_sizes=[3], resnet_dilations=[[1, 3, 5]],
            leaky_relu_negative_slope=0.1, output_sampling_rate=16000,
        ),
    )  # fmt: skip
    return quiet(
        LTX2Pipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(),
            vae=cast(vae, dtype),
            audio_vae=cast(audio_vae, dtype),
            text_encoder=None,
            tokenizer=None,
            connectors=cast(connectors, dtype),
            transformer=tiny_ltx2_transformer(seed, dtype),
            vocoder=cast(vocoder, dtype),
        )
    )


def tiny_ltx2_prompt_embeds(batch: int = 1, seq: int = 8, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict:
    """Random prompt and negative-prompt embeddings, `(batch, seq, 16 * 3)` (the text encoder's hidden states of every
    layer, stacked per token, as the pipeline packs them) and left-padded masks (Gemma pads on the left).

    Args:
        batch (`int`): Batch size.
        seq (`int`): Number of text tokens (at least 3).
        seed (`int`): Seed of the local generator.
        dtype (`torch.dtype`): Embedding dtype.
    """
    gen = torch.Generator().manual_seed(seed)
    mask = padding_mask(batch, seq, 2).flip(-1)  # left padding
    width = LTX2_TEXT_DIM * LTX2_TEXT_LAYERS
    return {
        "prompt_embeds": embeds(gen, batch, seq, width, dtype),
        "prompt_attention_mask": mask,
        "negative_prompt_embeds": embeds(gen, batch, seq, width, dtype),
        "negative_prompt_attention_mask": mask.clone(),
    }
