"""Kandinsky 5 and 6 plans: sharded per module, not per block.

Both models reshape the visual tokens back to their `(T, H, W)` grid with plain tensor code right after the last
visual block (`fractal_unflatten`, `visual_embed.reshape(-1, *visual_shape, C)`), so the sequence would have to be
gathered at the last block's output, and a plan cannot name the last block of a stack whose depth comes from the
config (plan factories take no model). So, as diffusers' own Helios plan does, the residual streams stay whole on
every rank: each attention and feed-forward module splits the tokens it reads (and their RoPE rows) and gathers its
output. Attention, projections and feed-forwards, the bulk of the compute, still divide by P; each module adds one
all-gather.

Sharded self-attention takes its K/V from the split tokens (two all-to-alls). Cross-attention shards only its
queries: its K/V (text, or the other modality, whose stream is whole on every rank) are attended locally.
"""

from diffusers.models._modeling_parallel import ContextParallelInput, ContextParallelOutput

from .base import SequencePlan

_TOKENS = ContextParallelInput(split_dim=1, expected_dims=3)
_GATHER = ContextParallelOutput(gather_dim=1, expected_dims=3)


def _attention(path: str, rope: dict | None = None) -> dict:
    """Split `path`'s query tokens (and RoPE rows), gather the output of its output projection `out_layer`."""
    return {path: {"hidden_states": _TOKENS, **(rope or {})}, f"{path}.out_layer": _GATHER}


# Kandinsky 5 visual RoPE after flattening: [B, S, 1, D / 2, 2, 2].
_K5_ROPE = {"rotary_emb": ContextParallelInput(split_dim=1, expected_dims=6)}

KANDINSKY5 = SequencePlan(
    split={
        **_attention("visual_transformer_blocks.*.self_attention", _K5_ROPE),
        **_attention("visual_transformer_blocks.*.cross_attention"),
        "visual_transformer_blocks.*.feed_forward": {"x": _TOKENS},
        "visual_transformer_blocks.*.feed_forward.out_layer": _GATHER,
    },
    # The text encoder blocks run on the whole text before any split. Only regular attention: the NABLA sparse mode
    # (`sparse_params`) passes a block mask to the sharded self-attention, which raises.
    local_attention=("text_transformer_blocks.*", "visual_transformer_blocks.*.cross_attention"),
)

# Kandinsky 6 RoPE tables, video [S, 1, D / 2, 2, 2] and audio [S_audio, 1, D / 2, 2, 2]: one row per token, dim 0.
_K6_ROPE = ContextParallelInput(split_dim=0, expected_dims=5)


def _k6_stream(prefix: str) -> dict:
    return {
        **_attention(f"{prefix}.self_attention", {"rotary_emb": _K6_ROPE}),
        **_attention(f"{prefix}.cross_attention"),
        f"{prefix}.feed_forward": {"hidden_states": _TOKENS},
        f"{prefix}.feed_forward.net.2": _GATHER,  # the feed-forward's output projection
    }


KANDINSKY6 = SequencePlan(
    split={
        **_k6_stream("visual_transformer_blocks.*.video_dec_block"),
        **_k6_stream("visual_transformer_blocks.*.audio_dec_block"),
        # Video queries on audio K/V and audio queries on video K/V. With `ca_rope` the query's RoPE rows (`rope_q`)
        # are split with it; the K/V side (`rope_kv`) stays whole, like the K/V.
        **_attention("visual_transformer_blocks.*.va_cross_attention", {"rope_q": _K6_ROPE}),
        **_attention("visual_transformer_blocks.*.av_cross_attention", {"rope_q": _K6_ROPE}),
    },
    local_attention=(
        "video_text_transformer_blocks.*",
        "audio_text_transformer_blocks.*",
        "visual_transformer_blocks.*.*_dec_block.cross_attention",
        "visual_transformer_blocks.*.va_cross_attention",
        "visual_transformer_blocks.*.av_cross_attention",
    ),
)

PLANS = {"Kandinsky5Transformer3DModel": KANDINSKY5, "Kandinsky6Transformer3DModel": KANDINSKY6}
