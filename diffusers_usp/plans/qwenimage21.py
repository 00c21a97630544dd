"""Qwen-Image 2.1: one single-stream sequence of text and images under block-causal attention.

The forward interleaves text and image tokens into one joint sequence (`[text, condition image, text, ..., target
image]`) before the blocks and projects all of it after them, so the sequence is split at the first block's input
and gathered at `proj_out`; the per-token tensors the forward passes every block (the RoPE table `[S, D/2]` and the
target-token mask `[S]`, which picks each token's modulation row) split with it, in every block and in `norm_out`.

Attention is causal over the sequence and bidirectional inside each image. The model describes that as segments
(`segments`, one kernel call per segment, on whole-sequence positions); the plan turns segments and the key-padding
vector into one `BlockCausalMask` (`BlockCausalFromSegments`), and the core attends it after the exchange, piece by
piece, never forming an S x S mask. The prefix KV cache (`kv_cache`, the pipeline's `use_kv_cache`) is refused: it
stores and re-reads the prefix keys by whole-sequence slices.
"""

from ..compat import ContextParallelInput, ContextParallelOutput
from .base import Refused, SequencePlan
from .joint_specs import BlockCausalFromSegments

_PER_TOKEN = {
    "rotary_emb": ContextParallelInput(split_dim=0, expected_dims=2),
    "target_token_mask": ContextParallelInput(split_dim=0, expected_dims=1),
}

_QWENIMAGE21 = SequencePlan(
    split={
        "": {
            "kv_cache": Refused(
                "Qwen-Image 2.1's prefix KV cache stores and re-reads the text and condition-image keys by "
                "whole-sequence slices, which sharded tokens would get wrong. Run without it: "
                "pipe(..., use_kv_cache=False), or call the transformer with kv_cache=None."
            ),
        },
        "transformer_blocks.0": {"hidden_states": ContextParallelInput(split_dim=1, expected_dims=3)},
        "transformer_blocks.*": _PER_TOKEN,
        "transformer_blocks.*.attn": {("segments", "key_valid", "attention_mask"): BlockCausalFromSegments()},
        "norm_out": {"target_token_mask": ContextParallelInput(split_dim=0, expected_dims=1)},
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
)

PLANS = {"QwenImage21Transformer2DModel": _QWENIMAGE21}
