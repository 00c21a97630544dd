"""LTX-2 coverage: two sharded sequences (video and audio) with cross-attention between them."""

import torch

from diffusers_usp.tiny import tiny_ltx2_transformer

from .base import Case, randn

# The tiny pipeline's transformer (`diffusers_usp.tiny.tiny_ltx2_transformer`) with one block, interleaved RoPE
# tables and plain attention: the other settings are modes of tests/test_ltx2.py.
LTX2_OVERRIDES = dict(num_layers=1, rope_type="interleaved", perturbed_attn=False)


def ltx2_inputs(model, g, batch=1, frames=2, height=3, width=4, audio=12, text=8):
    """24 video and 12 audio tokens (2, 3 and 4 ranks split both evenly). Per-token video timesteps with the first
    frame held at t=0, as the conditioning pipelines pass them, and a padded text mask (cross-attention, local)."""
    tokens = frames * height * width
    timestep = torch.full((batch, tokens), 700.0)
    timestep[:, : height * width] = 0.0
    text_mask = torch.ones(batch, text)
    text_mask[:, 6:] = 0
    cfg = model.config
    # Text features: caption channels, projected per modality; or already projected (LTX-2.3's connector does it).
    inner = (
        cfg.num_attention_heads * cfg.attention_head_dim,
        cfg.audio_num_attention_heads * cfg.audio_attention_head_dim,
    )
    text_dims = (cfg.caption_channels,) * 2 if cfg.use_prompt_embeddings else inner
    return {
        "hidden_states": randn(g, batch, tokens, cfg.in_channels),
        "audio_hidden_states": randn(g, batch, audio, cfg.audio_in_channels),
        "encoder_hidden_states": randn(g, batch, text, text_dims[0]),
        "audio_encoder_hidden_states": randn(g, batch, text, text_dims[1]),
        "timestep": timestep,
        "audio_timestep": torch.full((batch,), 700.0),
        "encoder_attention_mask": text_mask,
        "audio_encoder_attention_mask": text_mask,
        "num_frames": frames,
        "height": height,
        "width": width,
        "audio_num_frames": audio,
        "fps": 25.0,
    }


CASES = {
    "LTX2VideoTransformer3DModel": Case(
        config=LTX2_OVERRIDES,
        inputs=ltx2_inputs,
        tiny=tiny_ltx2_transformer,
        # uneven audio (diffusers' own 9 tokens) and the other input modes: tests/test_ltx2.py
        limits="`video_self_attention_mask` (IC-LoRA); uneven video and audio lengths of which some rank would hold "
        "as many tokens of each",
    ),
}
UNSUPPORTED: dict[str, str] = {}
