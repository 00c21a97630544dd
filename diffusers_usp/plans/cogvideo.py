"""CogVideoX plans: text joint with the video (prepended) in every block's attention.

CogVideoX's patch embedding returns one `[text, video]` sequence, which the forward then slices into text and video
streams; the blocks keep the two streams apart and concatenate `[text, video]` only inside attention and the
feed-forward. So the streams are split at the first block's inputs, not at the embedding: the video tokens always,
the text as `SplitOrReplicate` (sharded when P divides its length, 226 for the released models, else a replicated
block at the front of the attention sequence). The sin-cos position table is added inside the patch embedding,
before the split, so it needs no split of its own; the rotary tables of the 5B and 1.5 models (`image_rotary_emb`, a
`(cos, sin)` tuple from the pipeline, one row per video token) split like the video at the root.

ConsisID, built on CogVideoX, takes the same splits with one change: after its blocks the forward slices
`norm_final(cat([text, video]))[:, text_len:]` by the *whole* text length, which on sharded text would cut into the
video. So its text is `Replicated`: whole on every rank at any P, where that slice leaves exactly the local video, and
attended as a replicated block at the front. Its face path (`perceiver_cross_attention`, plain modules) attends from
each video token to the whole face tokens: per query, so exact on local tokens.
"""

from ..compat import ContextParallelInput, ContextParallelOutput
from .base import Replicated, SequencePlan, SplitOrReplicate

COGVIDEOX = SequencePlan(
    split={
        # Handed unchanged to every block: one split here serves them all.
        "": {
            "image_rotary_emb": (
                ContextParallelInput(split_dim=0, expected_dims=2),
                ContextParallelInput(split_dim=0, expected_dims=2),
            ),
        },
        # Block 0, not the root: the root's `hidden_states` is the 5-D latent, and the embedding joins text and video
        # into one sequence the forward then slices by the text length. Later blocks receive the local streams.
        "transformer_blocks.0": {
            "hidden_states": ContextParallelInput(split_dim=1, expected_dims=3),
            "encoder_hidden_states": SplitOrReplicate(split_dim=1, expected_dims=3),
        },
        # proj_out is per token; the unpatchify reshape after it needs every token.
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
)

CONSISID = SequencePlan(
    split={
        **COGVIDEOX.split,
        "transformer_blocks.0": {
            "hidden_states": ContextParallelInput(split_dim=1, expected_dims=3),
            "encoder_hidden_states": Replicated(split_dim=1, expected_dims=3),  # sliced off by its whole length
        },
    },
)

PLANS = {"CogVideoXTransformer3DModel": COGVIDEOX, "ConsisIDTransformer3DModel": CONSISID}
