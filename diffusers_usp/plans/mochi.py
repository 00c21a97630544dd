"""Mochi: text joint with the video, appended after it, with each sample's padded text dropped in every attention.

Mochi's processor attends sample by sample over `[video, valid text]`, the valid prompt tokens picked with the
`[B, T]` mask, so the joint length depends on the data. The text stays whole on every rank (`ReplicatedSubset`),
and so does the mask the forward hands each block, so every rank picks the same valid tokens: each call's
replicated block is then the tokens beyond this rank's video chunk, whatever their count. The video is split at the
first block's input (the forward patchifies it with plain tensor code), its RoPE tables at `rope`'s output, and
gathered at `proj_out`.
"""

from ..compat import ContextParallelInput, ContextParallelOutput
from .base import ReplicatedSubset, SequencePlan

MOCHI = SequencePlan(
    split={
        "transformer_blocks.0": {
            "hidden_states": ContextParallelInput(split_dim=1, expected_dims=3),
            "encoder_hidden_states": ReplicatedSubset(split_dim=1, expected_dims=3),
        },
        "rope": {  # (cos, sin), [S, H, D / 2] each
            0: ContextParallelInput(split_dim=0, expected_dims=3, split_output=True),
            1: ContextParallelInput(split_dim=0, expected_dims=3, split_output=True),
        },
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
    replicated_front=False,
)

PLANS = {"MochiTransformer3DModel": MOCHI}
