"""LuminaNext (Lumina-T2X): self-attention over the image patches, cross-attention to the text, in every layer.

The patch embedder returns the tokens, their `[B, S]` padding mask and their RoPE rows, all split at its output.
Each self-attention expands its chunk of the mask to `[B, H, n, n]` (one key row for every query and head): a
separable mask the core carries as a key-padding vector (`separable.py`). Proportional attention (the pipeline's
default, `base_sequence_length` in `cross_attention_kwargs`) scales by `sqrt(log(n, base))` of the module's own
query count `n`: `LogBaseOfLength` hands each rank the base that gives the whole sequence's scale. The
cross-attention to the text (`attn2`, no proportional scale) attends locally. `norm_out` is the last per-token
module before the forward unpatchifies the whole image.
"""

from ..compat import ContextParallelInput, ContextParallelOutput
from .base import LogBaseOfLength, SequencePlan

LUMINA_NEXT = SequencePlan(
    split={
        "patch_embedder": {
            0: ContextParallelInput(split_dim=1, expected_dims=3, split_output=True),  # tokens [B, S, C]
            1: ContextParallelInput(split_dim=1, expected_dims=2, split_output=True),  # padding mask [B, S]
            3: ContextParallelInput(split_dim=1, expected_dims=3, split_output=True),  # RoPE [1, S, D / 2]
        },
        "layers.*.attn1": {"base_sequence_length": LogBaseOfLength()},
        "norm_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
    cross_attention=("layers.*.attn2",),
)

PLANS = {"LuminaNextDiT2DModel": LUMINA_NEXT}
