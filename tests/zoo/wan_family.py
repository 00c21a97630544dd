"""Wan-derived video transformers: VACE, Animate, SkyReels-V2, ChronoEdit, Helios."""

import torch

from .base import Case, randn

# 4 heads of 8 channels; Wan's RoPE splits a head into t/h/w parts of 4/2/2 channels.
_WAN = dict(patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=8, in_channels=4, out_channels=4,
            text_dim=16, freq_dim=16, ffn_dim=32, num_layers=2)  # fmt: skip


def _video(g, channels, frames=3, height=4, width=8):
    # 3 x 2 x 4 = 24 tokens after the (1, 2, 2) patch: 2, 3 and 4 ranks all split them evenly.
    return randn(g, 1, channels, frames, height, width)


def _vace_inputs(model, g):
    cfg = model.config
    return {
        "hidden_states": _video(g, cfg.in_channels),
        "timestep": torch.randint(0, 1000, (1,), generator=g),
        "encoder_hidden_states": randn(g, 1, 8, cfg.text_dim),
        "control_hidden_states": _video(g, cfg.vace_in_channels),
        "control_hidden_states_scale": torch.rand(len(cfg.vace_layers), generator=g) + 0.5,
    }


def _animate_inputs(model, g, frames=12, face_frames=41):
    # 12 latent frames (1 reference + 11 pose-driven) so that 2, 3 and 4 ranks each hold whole frames, which the
    # per-frame face adapter needs. 41 face frames -> 11 motion frames after the face encoder's two stride-2 convs.
    cfg = model.config
    size = cfg.motion_encoder_size
    return {
        "hidden_states": randn(g, 1, cfg.in_channels, frames, 2, 4),
        "timestep": torch.randint(0, 1000, (1,), generator=g),
        "encoder_hidden_states": randn(g, 1, 8, cfg.text_dim),
        "pose_hidden_states": randn(g, 1, cfg.latent_channels, frames - 1, 2, 4),
        "face_pixel_values": randn(g, 1, 3, face_frames, size, size),
    }


def _skyreels_inputs(model, g, frames=3):
    # Diffusion forcing: one timestep per latent frame, so the modulation is per token.
    cfg = model.config
    return {
        "hidden_states": _video(g, cfg.in_channels, frames),
        "timestep": torch.randint(0, 1000, (1, frames), generator=g),
        "encoder_hidden_states": randn(g, 1, 8, cfg.text_dim),
        "enable_diffusion_forcing": True,
    }


def _chronoedit_inputs(model, g):
    # 2 latent frames: ChronoEdit's edit setting, whose RoPE places the second frame at a skipped temporal position.
    cfg = model.config
    return {
        "hidden_states": _video(g, cfg.in_channels, frames=2, height=4, width=12),
        "timestep": torch.randint(0, 1000, (1,), generator=g),
        "encoder_hidden_states": randn(g, 1, 8, cfg.text_dim),
    }


def _helios_inputs(model, g, height=8, width=24):
    # The pipeline's layout with history_sizes [16, 2, 1] and keep_first_frame: frame indices 0 (prefix),
    # 1-16 (long), 17-18 (mid), 19 (short), 20 (current). Tokens: 16 long + 12 mid (coarser patches) + 96 short
    # + 48 current = 168; the current 48 alone (cross-attention's queries) also divide by 2, 3 and 4.
    cfg = model.config
    index = torch.arange(21)[None]
    return {
        "hidden_states": randn(g, 1, cfg.in_channels, 1, height, width),
        "timestep": torch.randint(0, 1000, (1,), generator=g),
        "encoder_hidden_states": randn(g, 1, 8, cfg.text_dim),
        "indices_hidden_states": index[:, 20:],
        "indices_latents_history_short": torch.cat([index[:, :1], index[:, 19:20]], dim=1),
        "indices_latents_history_mid": index[:, 17:19],
        "indices_latents_history_long": index[:, 1:17],
        "latents_history_short": randn(g, 1, cfg.in_channels, 2, height, width),
        "latents_history_mid": randn(g, 1, cfg.in_channels, 2, height, width),
        "latents_history_long": randn(g, 1, cfg.in_channels, 16, height, width),
    }


CASES = {
    "WanVACETransformer3DModel": Case(
        config=dict(_WAN, vace_layers=[0, 1], vace_in_channels=4),
        inputs=_vace_inputs,
    ),
    "WanAnimateTransformer3DModel": Case(
        config=dict(
            _WAN,
            in_channels=12,
            latent_channels=4,
            image_dim=None,
            motion_encoder_size=8,
            motion_encoder_channel_sizes={"8": 4, "4": 4},
            motion_style_dim=8,
            motion_dim=4,
            motion_encoder_dim=8,
            face_encoder_hidden_dim=8,
            face_encoder_num_heads=2,
            inject_face_latents_blocks=1,
            motion_encoder_batch_size=16,
        ),
        inputs=_animate_inputs,
    ),
    "SkyReelsV2Transformer3DModel": Case(config=_WAN, inputs=_skyreels_inputs),
    "ChronoEditTransformer3DModel": Case(config=_WAN, inputs=_chronoedit_inputs),
    "HeliosTransformer3DModel": Case(
        config=dict(
            patch_size=(1, 2, 2),
            num_attention_heads=4,
            attention_head_dim=16,
            in_channels=4,
            out_channels=4,
            text_dim=16,
            freq_dim=16,
            ffn_dim=32,
            num_layers=2,
            rope_dim=(4, 6, 6),
        ),
        inputs=_helios_inputs,
    ),
}
UNSUPPORTED = {
    "WanAnimate2Transformer3DModel": (
        "generation pass is flex block-masked self-attention against a reference KV cache, with RoPE applied inside "
        "the processor from the whole token grid: needs masked USP"
    ),
}
