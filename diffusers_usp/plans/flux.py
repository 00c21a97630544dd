"""Flux-family plans: text joint with the image (prepended) in every block."""

from diffusers.models._modeling_parallel import ContextParallelInput, ContextParallelOutput

from .base import SequencePlan, SplitOrReplicate

# Text is sharded with the image when P divides its length: then its MLPs and projections divide by P too.
# Otherwise it stays whole on every rank and attention treats it as a replicated block.
FLUX = SequencePlan(
    split={
        "": {
            "hidden_states": ContextParallelInput(split_dim=1, expected_dims=3),
            "encoder_hidden_states": SplitOrReplicate(split_dim=1, expected_dims=3),
            "img_ids": ContextParallelInput(split_dim=0, expected_dims=2),
            "txt_ids": SplitOrReplicate(split_dim=0, expected_dims=2),
        },
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
)

PLANS = {"FluxTransformer2DModel": FLUX}
