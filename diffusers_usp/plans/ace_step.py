"""ACE-Step's plan: a 1-D audio sequence whose every other self-attention layer is banded (a sliding window).

The forward builds everything a layer needs from the whole sequence after the patchify conv: the RoPE `(cos, sin)`
table and the sliding layers' `[1, 1, S, S]` additive band mask (`|i - j| <= sliding_window`), then hands both
whole to every layer. So the tokens split at the first layer's input and each layer splits its own copy of the RoPE
table; the band mask stays whole, and the core applies it after the input all-to-all, when this rank holds every
query and key of its heads (`attention.sharded_attention`, dense masks; around a ring, each block's columns). The
mask is the one the single-process model allocates, never more. The full-attention layers get no mask.

After the layers the forward modulates, de-patchifies and cuts the patch padding off by the whole length, so the
gather sits on the last layer's output. Cross-attention to the condition tokens is local.
"""

from ..compat import ContextParallelInput, ContextParallelOutput
from .base import SequencePlan

_ROPE_ROWS = ContextParallelInput(split_dim=0, expected_dims=2)

ACE_STEP = SequencePlan(
    split={
        "layers.0": {"hidden_states": ContextParallelInput(split_dim=1, expected_dims=3)},
        "layers.*": {"position_embeddings": (_ROPE_ROWS, _ROPE_ROWS)},
        "layers.-1": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
    cross_attention=("layers.*.cross_attn",),
)

PLANS = {"AceStepTransformer1DModel": ACE_STEP}
