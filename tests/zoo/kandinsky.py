"""Kandinsky 5 and 6 video transformers."""

import torch

from .base import Case, randn

# 4 heads of 8 channels (RoPE t/h/w parts of 4/2/2); 3 x 2 x 4 = 24 video tokens after the (1, 2, 2) patch.
_K = dict(in_visual_dim=4, out_visual_dim=4, in_text_dim=16, in_text_dim2=8, time_dim=16, patch_size=(1, 2, 2),
          model_dim=32, ff_dim=64, num_text_blocks=1, num_visual_blocks=2, axes_dims=(4, 2, 2))  # fmt: skip


def _kandinsky5_inputs(model, g, frames=3, height=4, width=8, text=8):
    cfg = model.config
    return {
        "hidden_states": randn(g, 1, frames, height, width, cfg.in_visual_dim),
        "encoder_hidden_states": randn(g, 1, text, cfg.in_text_dim),
        "timestep": torch.rand(1, generator=g) * 1000,
        "pooled_projections": randn(g, 1, cfg.in_text_dim2),
        "visual_rope_pos": (torch.arange(frames), torch.arange(height // 2), torch.arange(width // 2)),
        "text_rope_pos": torch.arange(text),
    }


def _kandinsky6_inputs(model, g, frames=3, height=4, width=8, text=8, audio=12):
    # Video and audio (12 latent steps) together, with the released checkpoints' cross-modal RoPE and gates, and a
    # padded prompt mask (text self- and cross-attention, local).
    cfg = model.config
    text_mask = torch.ones(1, text, dtype=torch.bool)
    text_mask[:, 6:] = False
    return {
        "hidden_states": randn(g, 1, frames, height, width, 2 * cfg.in_visual_dim + 1),
        "encoder_hidden_states": randn(g, 1, text, cfg.in_text_dim),
        "pooled_projections": randn(g, 1, cfg.in_text_dim2),
        "timestep": torch.rand(1, generator=g) * 1000,
        "audio_hidden_states": randn(g, 1, audio, cfg.in_audio_dim),
        "encoder_attention_mask": text_mask,
    }


CASES = {
    "Kandinsky5Transformer3DModel": Case(config=_K, inputs=_kandinsky5_inputs),
    "Kandinsky6Transformer3DModel": Case(
        config=dict(
            _K,
            in_audio_dim=4,
            out_audio_dim=4,
            ca_rope=True,
            cross_gates=True,
            fix_modulation=True,
            text_token_padding=True,
        ),
        inputs=_kandinsky6_inputs,
    ),
}
UNSUPPORTED = {
    "Kandinsky6SRTransformer3DModel": (
        "always NABLA block-sparse self-attention (a flex BlockMask built from the whole sequence's Q/K block "
        "statistics): needs masked USP"
    ),
}
