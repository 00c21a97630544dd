"""Kandinsky 5 and 6 plans: the video tokens are split at the first visual block and gathered at the last one's output.

Both forwards reshape the visual tokens back to their `(T, H, W)` grid with plain tensor code right after the last
visual block (`fractal_unflatten`, `visual_embed.reshape(-1, *visual_shape, C)`), so the gather sits on the last
block's output ("visual_transformer_blocks.-1", whatever the config's depth), not on the output layer.

The text encoder blocks run on the whole text before any split, so their self-attention is local, as is every
cross-attention to the text.
"""

from ..compat import ContextParallelInput, ContextParallelOutput
from .base import SequencePlan

_TOKENS = ContextParallelInput(split_dim=1, expected_dims=3)
_GATHER = ContextParallelOutput(gather_dim=1, expected_dims=3)

# Kandinsky 5: every visual block reads the whole flattened RoPE table from `forward`, [B, S, 1, D / 2, 2, 2], so
# each block splits its own copy. Only regular attention: the NABLA sparse mode (`sparse_params`) passes a block mask
# to the sharded self-attention, which raises.
KANDINSKY5 = SequencePlan(
    split={
        "visual_transformer_blocks.0": {"visual_embed": _TOKENS},
        "visual_transformer_blocks.*": {"rope": ContextParallelInput(split_dim=1, expected_dims=6)},
        "visual_transformer_blocks.-1": _GATHER,
    },
    cross_attention=("text_transformer_blocks.*", "visual_transformer_blocks.*.cross_attention"),
)

# Kandinsky 6 RoPE tables, video [S, 1, D / 2, 2, 2]: one row per token, dim 0.
_K6_ROPE = ContextParallelInput(split_dim=0, expected_dims=5)

# Kandinsky 6 fuses a video and an audio stream per block. Only the video is split: audio is about 43 latent steps
# per second against thousands of video tokens, so every rank runs it whole (all its attention is then local)
# rather than paying collectives for it. The video meets the audio in two cross-attentions:
# - `va_cross_attention`: sharded video queries on whole audio K/V, local.
# - `av_cross_attention`: whole audio queries on the video's `vis_pre_ca` K/V, which must be whole too. That tensor
#   is `apply_scale_shift(video cross_attention_norm(vis), ...)`, elementwise after the norm, so the norm's output is
#   gathered (one all-gather per block) and the video's own text cross-attention splits it back (its queries).
# The video RoPE table therefore stays whole at the block: the video self-attention and the `va` queries split their
# own copies, while `av_cross_attention` reads it whole as the RoPE of its video keys (`rope_kv`).
# Without audio the cross-modal attentions do not run, but the gather still does (the norm cannot know whether audio
# follows): one all-gather per block either way.
KANDINSKY6 = SequencePlan(
    split={
        "visual_transformer_blocks.0": {"vis": _TOKENS},
        "visual_transformer_blocks.*.video_dec_block.self_attention": {"rotary_emb": _K6_ROPE},
        "visual_transformer_blocks.*.video_dec_block.cross_attention_norm": _GATHER,
        "visual_transformer_blocks.*.video_dec_block.cross_attention": {"hidden_states": _TOKENS},
        "visual_transformer_blocks.*.va_cross_attention": {"rope_q": _K6_ROPE},
        # The block returns (video, audio); only the video was split.
        "visual_transformer_blocks.-1": [_GATHER, None],
    },
    cross_attention=(
        "video_text_transformer_blocks.*",
        "audio_text_transformer_blocks.*",
        "visual_transformer_blocks.*.audio_dec_block.*",
        "visual_transformer_blocks.*.video_dec_block.cross_attention",
        "visual_transformer_blocks.*.va_cross_attention",
        "visual_transformer_blocks.*.av_cross_attention",
    ),
)

PLANS = {"Kandinsky5Transformer3DModel": KANDINSKY5, "Kandinsky6Transformer3DModel": KANDINSKY6}
