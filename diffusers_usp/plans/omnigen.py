"""OmniGen: one joint stream, `[condition tokens (text and input images), time token, output image]`, which the
forward builds before the blocks, with its RoPE table (`[S, D]`, from the whole stream's `position_ids`) and its
attention mask: a dense `[B, 1, S, S]` (causal over the text, bidirectional within each image) that the pipeline
passes and the forward turns additive.

The stream is split as one sequence where the blocks begin (the hidden states at the first block, the RoPE table at
every block) and gathered at the last block's output; the final norm, the slice of the output image tokens and the
projection then run whole on every rank. The mask reaches every block whole, and the core applies it after the
exchange in the sequence's own order (`attention.sharded_attention`).
"""

from ..compat import ContextParallelInput, ContextParallelOutput
from .base import SequencePlan

_ROPE = ContextParallelInput(split_dim=0, expected_dims=2)  # [S, D] cos or sin

_OMNIGEN = SequencePlan(
    split={
        "layers.0": {"hidden_states": ContextParallelInput(split_dim=1, expected_dims=3)},
        "layers.*": {"image_rotary_emb": (_ROPE, _ROPE)},
        "layers.-1": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
)

PLANS = {"OmniGenTransformer2DModel": _OMNIGEN}
