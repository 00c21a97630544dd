"""Ideogram 4: one packed stream (text and image tokens of several samples, tagged per token), attending within each
sample through a dense block-diagonal mask, `segment_ids[q] == segment_ids[k]` (`[B, 1, S, S]`).

The forward builds every per-token tensor of the whole stream (the masked inputs, the RoPE tables from
`position_ids`, the segment mask) before the blocks, so the stream is split where the blocks begin, as one sequence:
the hidden states at the first block, the RoPE tables and a per-token modulation (`adaln_input` is `[B, S, C]` when
the timestep is per token, `[B, 1, C]` when it is per sample) at every block. The mask reaches every block whole,
and the core applies it after the exchange, in the sequence's own order (`attention.sharded_attention`). The stream
is gathered at the last block's output; the final layer then runs whole on every rank (one norm and projection).
"""

from ..compat import ContextParallelInput, ContextParallelOutput
from .base import SequencePlan, SplitUnlessBroadcast

_PER_TOKEN = ContextParallelInput(split_dim=1, expected_dims=3)

_IDEOGRAM4 = SequencePlan(
    split={
        "layers.0": {"hidden_states": _PER_TOKEN},
        "layers.*": {
            "image_rotary_emb": (_PER_TOKEN, _PER_TOKEN),
            "adaln_input": SplitUnlessBroadcast(split_dim=1, expected_dims=3),
        },
        "layers.-1": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
)

PLANS = {"Ideogram4Transformer2DModel": _IDEOGRAM4}
