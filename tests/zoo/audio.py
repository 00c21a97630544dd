"""Audio coverage cases: Stable Audio Open, Stable Audio 3, MiniMax Music 3, and the audio transformers without a
plan."""

import torch
from diffusers.models.embeddings import get_1d_rotary_pos_embed

from .base import Case, randn, timestep


def _stable_audio_inputs(model, g, batch=2, length=23, text=5):
    # 23 latent steps + the prepended global token: 24 tokens. Batch 2, as the pipeline's classifier-free guidance.
    cfg = model.config
    return {
        "hidden_states": randn(g, batch, cfg.in_channels, length),
        "timestep": timestep(g, scale=1.0),
        "encoder_hidden_states": randn(g, batch, text, cfg.cross_attention_input_dim),
        "global_hidden_states": randn(g, batch, 1, cfg.global_states_input_dim),
        # The pipeline's table: one row per latent step plus one for the global token.
        "rotary_embedding": get_1d_rotary_pos_embed(
            cfg.attention_head_dim // 2, length + 1, use_real=True, repeat_interleave_real=False
        ),
    }


def _stable_audio3_inputs(model, g, length=20, text=6):
    # 20 latent steps + 4 memory tokens: 24 tokens. A padded prompt (replaced by the learned padding embedding).
    cfg = model.config
    text_mask = torch.ones(1, text, dtype=torch.bool)
    text_mask[:, 4:] = False
    return {
        "hidden_states": randn(g, 1, cfg.io_channels, length),
        "timestep": timestep(g, scale=1.0),
        "encoder_hidden_states": randn(g, 1, text, cfg.cond_token_dim),
        "global_hidden_states": randn(g, 1, cfg.global_cond_dim),
        "encoder_attention_mask": text_mask,
    }


def _minimax_music3_inputs(model, g, length=23):
    # 23 latent steps + the prepended timestep token: 24 tokens.
    cfg = model.config
    return {
        "hidden_states": randn(g, 1, cfg.in_channels, length),
        "timestep": timestep(g, scale=1.0),
        "encoder_hidden_states": randn(g, 1, length, cfg.condition_dim),
    }


CASES = {
    # GQA cross-attention (4 query heads, 2 KV heads) to the whole text.
    "StableAudioDiTModel": Case(
        config=dict(
            sample_size=23,
            in_channels=4,
            num_layers=2,
            attention_head_dim=16,
            num_attention_heads=4,
            num_key_value_attention_heads=2,
            out_channels=4,
            cross_attention_dim=32,
            time_proj_dim=16,
            global_states_input_dim=16,
            cross_attention_input_dim=16,
        ),
        inputs=_stable_audio_inputs,
    ),
    # Differential attention (two kernel calls per attention), as released.
    "StableAudio3DiTModel": Case(
        config=dict(
            io_channels=4,
            embed_dim=32,
            depth=2,
            num_heads=2,
            cond_token_dim=16,
            global_cond_dim=16,
            local_add_cond_dim=5,
            timestep_features_dim=16,
            ff_mult=2.0,
            num_memory_tokens=4,
        ),
        inputs=_stable_audio3_inputs,
    ),
    "MiniMaxMusic3Transformer1DModel": Case(
        config=dict(
            in_channels=4,
            condition_dim=8,
            num_layers=2,
            num_attention_heads=4,
            attention_head_dim=8,
            ff_inner_dim=32,
            rotary_dim=4,
            fourier_embedding_dim=16,
        ),
        inputs=_minimax_music3_inputs,
    ),
}
UNSUPPORTED = {
    "T5FilmDecoder": "its attention modules (`scale_qk=False`) default to diffusers' `AttnProcessor`, which computes "
    "attention with bmm (`get_attention_scores`), not SDPA",
    "LongCatAudioDiTTransformer": "the forward computes RoPE from the token count of the embedded audio and adds "
    "that embedding back after the blocks (long skip): split before, the RoPE rows start at 0 on every rank; split "
    "at the blocks, the skip mixes whole and sharded tokens",
    "MiniMaxMusic3RVQDepthDecoder": "causal self-attention over at most 8 codebook steps of an autoregressive depth "
    "decoder: no sequence to shard",
}
