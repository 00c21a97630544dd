"""HunyuanVideo 1.5: text joint with the video, appended after it, under a per-query padding mask.

The forward gathers each sample's valid text tokens (image, ByT5, then prompt) to the front of the text and passes
every block their padding vector, `[B, T]`. Each processor pads it on the left with `True` for its own video tokens
and builds `m_i & m_j` over its `[video, text]` sequence: padded text queries attend nothing (SDPA returns 0 for
them) and no query attends padded text. That mask is the outer product of one validity vector with itself, so the
core carries the vector with its keys through the exchange and zeroes the padded queries' rows (`separable.py`),
which is exact whichever rank holds which token.

The video splits right after patch embedding, its RoPE tables with it, and is gathered at `proj_out`. The text and
its padding vector exist only inside `forward` (plain tensor code), so both split at the blocks' inputs, alike:
sharded when P divides the text length, else whole on every rank and a replicated block after the video. The token
refiner attends over the whole prompt before any split: local, with no collective.
"""

from ..compat import ContextParallelInput, ContextParallelOutput
from .base import SequencePlan, SplitOrReplicate

HUNYUAN_VIDEO15 = SequencePlan(
    split={
        "x_embedder": {0: ContextParallelInput(split_dim=1, expected_dims=3, split_output=True)},
        "rope": {
            0: ContextParallelInput(split_dim=0, expected_dims=2, split_output=True),
            1: ContextParallelInput(split_dim=0, expected_dims=2, split_output=True),
        },
        "transformer_blocks.0": {"encoder_hidden_states": SplitOrReplicate(split_dim=1, expected_dims=3)},
        # Every block gets the whole `[B, T]` vector from `forward`: each keeps the rows of the text it holds.
        "transformer_blocks.*": {"attention_mask": SplitOrReplicate(split_dim=1, expected_dims=2)},
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
    cross_attention=("context_embedder.*",),
    replicated_front=False,
)

PLANS = {"HunyuanVideo15Transformer3DModel": HUNYUAN_VIDEO15}
