"""EasyAnimate's plan: text joint with the video in every block."""

from ..compat import ContextParallelInput, ContextParallelOutput
from .base import SequencePlan, SplitOrReplicate

# EasyAnimate: every block concatenates `[text, video]` inside attention (its MMDiT blocks with their own text
# projections, the others through the shared ones), and RoPE covers the video rows only, so the `(cos, sin)` table
# from `rope_embedding` splits like the video. The video is patch-embedded and flattened inside the forward, so the
# streams split at the first block's inputs; text is sharded when P divides its length, else a replicated block.
EASYANIMATE = SequencePlan(
    split={
        "rope_embedding": {
            0: ContextParallelInput(split_dim=0, expected_dims=2, split_output=True),
            1: ContextParallelInput(split_dim=0, expected_dims=2, split_output=True),
        },
        "transformer_blocks.0": {
            "hidden_states": ContextParallelInput(split_dim=1, expected_dims=3),
            "encoder_hidden_states": SplitOrReplicate(split_dim=1, expected_dims=3),
        },
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
)

PLANS = {"EasyAnimateTransformer3DModel": EASYANIMATE}
