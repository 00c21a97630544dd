"""HunyuanVideo-family plans: text joint with the video, appended after it, in every block.

FramePack packs `[4x | 2x | 1x history | current]` latent tokens into one sequence and keeps only the current ones
after the last block (`hidden_states[:, -original_context_length:]`), so the sequence is gathered at the last single
block's output, not at `proj_out`.
"""

from ..compat import ContextParallelInput, ContextParallelOutput
from .base import Replicated, SequencePlan, SplitOrReplicate, TokenCount

_ROPE_ROWS = ContextParallelInput(split_dim=0, expected_dims=2)

# The packed tokens and their `(cos, sin)` RoPE tables ([S, D] each, concatenated in the same order by
# `_pack_history_states`, plain code) exist only inside `forward`: the tokens split at the first block's input, and
# every block splits its own copy of the tables (double blocks call them `freqs_cis`, single ones
# `image_rotary_emb`). RoPE covers the latent rows only; the text (image tokens + prompt) follows them in attention
# (`replicated_front=False`), sharded when P divides its length, else replicated.
# The token refiner runs on the whole prompt before any split: local.
# With batch 1 (the pipeline's: true CFG makes separate calls) `forward` trims the padded prompt and passes no mask.
# With batch > 1 it passes a [B, 1, 1, S + T] key mask built over the whole joint sequence, which the sharded
# attention refuses with a message (its rows are not this rank's keys).
HUNYUAN_VIDEO_FRAMEPACK = SequencePlan(
    split={
        "transformer_blocks.0": {
            "hidden_states": ContextParallelInput(split_dim=1, expected_dims=3),
            "encoder_hidden_states": SplitOrReplicate(split_dim=1, expected_dims=3),
        },
        "transformer_blocks.*": {"freqs_cis": (_ROPE_ROWS, _ROPE_ROWS)},
        "single_transformer_blocks.*": {"image_rotary_emb": (_ROPE_ROWS, _ROPE_ROWS)},
        # The block returns (latents, text); `forward` drops the text.
        "single_transformer_blocks.-1": [ContextParallelOutput(gather_dim=1, expected_dims=3), None],
    },
    cross_attention=("context_embedder.*",),
    replicated_front=False,
)


def _hunyuan_video(transformer) -> SequencePlan:
    # The video splits right after patch embedding, its RoPE tables with it. The text stays whole at every P
    # (`Replicated`): the token refiner attends over the whole prompt, and `forward` builds the joint [video, text]
    # key-padding mask from local lengths plus the whole prompt's valid count, which is this rank's mask only while
    # each rank holds all the text. Attention then takes the text as a replicated block after the video.
    split = {
        "x_embedder": {0: ContextParallelInput(split_dim=1, expected_dims=3, split_output=True)},
        "context_embedder": {0: Replicated(split_dim=1, expected_dims=3, split_output=True)},
        "rope": {
            0: ContextParallelInput(split_dim=0, expected_dims=2, split_output=True),
            1: ContextParallelInput(split_dim=0, expected_dims=2, split_output=True),
        },
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    }
    if transformer.config.image_condition_type == "token_replace":
        # Image-to-video by token replacement modulates the first frame's tokens apart: every block takes their count
        # over the whole video (`num_tokens`, the first `x[:, :num_tokens]` rows) and is given this rank's share.
        split["transformer_blocks.*"] = split["single_transformer_blocks.*"] = {"num_tokens": TokenCount()}
    return SequencePlan(split=split, cross_attention=("context_embedder.*",), replicated_front=False)


PLANS = {
    "HunyuanVideoFramepackTransformer3DModel": HUNYUAN_VIDEO_FRAMEPACK,
    "HunyuanVideoTransformer3DModel": _hunyuan_video,
}
