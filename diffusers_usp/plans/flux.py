"""Flux-family plans: text joint with the image (prepended) in every block."""

from diffusers.models._modeling_parallel import ContextParallelInput, ContextParallelOutput

from .base import SequencePlan, SplitEach, SplitOrReplicate

# Text is sharded with the image when P divides its length: then its MLPs and projections divide by P too.
# Otherwise it stays whole on every rank and attention treats it as a replicated block. Flux's relatives reuse this
# plan (`mmdit_a.py`).
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

# Flux 1 also takes ControlNet residuals, one per controlled block, added to the image tokens after the block (the
# single blocks too: they return the image apart from the text). The ControlNet itself is not parallelized: every
# rank runs it whole and keeps its own tokens' rows.
_FLUX_CONTROLNET = SequencePlan(
    split={
        **FLUX.split,
        "": {
            **FLUX.split[""],
            "controlnet_block_samples": SplitEach(split_dim=1, expected_dims=3),
            "controlnet_single_block_samples": SplitEach(split_dim=1, expected_dims=3),
        },
    },
)

PLANS = {"FluxTransformer2DModel": _FLUX_CONTROLNET}
