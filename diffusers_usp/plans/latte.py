"""Latte's plan: spatial blocks attend over each frame's patches, temporal blocks over each patch's frames.

The forward folds frames into the batch (`[B * F, N, C]`) for the spatial blocks, and patches into the batch (`[B * N,
F, C]`) for the temporal ones. Splitting the N patches of every frame (at `pos_embed`'s output, which adds the
sin-cos positions) shards the spatial self-attention; a temporal attention then sees every frame of this rank's
patches, so it attends locally with no collective (`cross_attention`: its keys are its own queries' rows), and so
does each spatial block's cross-attention to the caption.

The forward builds the temporal blocks' AdaLN timestep as one row per (sample, patch), `[B * N, 6C]`, and hands it
whole to every temporal block: `SplitPerSample` keeps each sample's rows of this rank's patches. The gather sits on
`proj_out`'s output, before the unpatchify reshapes to the whole grid.
"""

from ..compat import ContextParallelInput, ContextParallelOutput
from .base import SequencePlan, SplitPerSample

LATTE = SequencePlan(
    split={
        "pos_embed": {0: ContextParallelInput(split_dim=1, expected_dims=3, split_output=True)},
        "temporal_transformer_blocks.*": {"timestep": SplitPerSample(split_dim=0, expected_dims=2)},
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
    cross_attention=("transformer_blocks.*.attn2", "temporal_transformer_blocks.*.attn1"),
)

PLANS = {"LatteTransformer3DModel": LATTE}
