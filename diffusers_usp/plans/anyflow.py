"""AnyFlow's plan (the bidirectional flow-map model): Wan's layout, with its RoPE tables in a dict.

The forward builds one RoPE table for the whole token grid and hands it to every block as a dict `{"query": freqs,
"key": freqs}` (`[1, 1, S, D/2]`, complex), and a per-token AdaLN projection `timestep_proj` (`[B, S, 6, C]`, each
frame's timestep repeated over its tokens); both split at every block's input, the dict key by key. The tokens split
at the first block (the forward patchifies and flattens with plain tensor code). After the blocks the forward
modulates with the per-token `temb` (`[B, S, C]`, whole), so the gather sits on the last block's output. `attn2` is
cross-attention to the text (and the image tokens, when given).

AnyFlow-FAR (chunk-causal attention with a KV cache) has no plan: see `tests/zoo/minimax_h3.py`.
"""

from ..compat import ContextParallelInput, ContextParallelOutput
from .base import SequencePlan

_ROPE_ROWS = ContextParallelInput(split_dim=2, expected_dims=4)

ANYFLOW = SequencePlan(
    split={
        "blocks.0": {"hidden_states": ContextParallelInput(split_dim=1, expected_dims=3)},
        "blocks.*": {
            "temb": ContextParallelInput(split_dim=1, expected_dims=4),
            "rotary_emb": {"query": _ROPE_ROWS, "key": _ROPE_ROWS},
        },
        "blocks.-1": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
    cross_attention=("blocks.*.attn2",),
)

PLANS = {"AnyFlowTransformer3DModel": ANYFLOW}
