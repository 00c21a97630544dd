"""Flux-family plans: text joint with the image (prepended) in every block."""

from ..compat import ContextParallelInput, ContextParallelOutput
from .base import Replicated, SequencePlan, SplitEach, SplitOrReplicate

# Text is sharded with the image when P divides its length: then its MLPs and projections divide by P too.
# Otherwise it stays whole on every rank and attention treats it as a replicated block. Flux's relatives reuse this
# plan (`flux_family.py`). The ids split along their token dim, the second to last: `[S, 3]`, or the deprecated
# batched `[B, S, 3]` that the forward still accepts (it warns and takes row 0).
_IMG_IDS = ContextParallelInput(split_dim=-2)
_TXT_IDS = SplitOrReplicate(split_dim=-2)
FLUX = SequencePlan(
    split={
        "": {
            "hidden_states": ContextParallelInput(split_dim=1, expected_dims=3),
            "encoder_hidden_states": SplitOrReplicate(split_dim=1, expected_dims=3),
            "img_ids": _IMG_IDS,
            "txt_ids": _TXT_IDS,
        },
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
)

# Flux 1 also takes ControlNet residuals, one per controlled block, added to the image tokens after the block (the
# single blocks too: they return the image apart from the text). They arrive whole, from a ControlNet that runs
# whole or gathers its residuals (below), and each rank keeps its own tokens' rows.
_FLUX_WITH_RESIDUALS = SequencePlan(
    split={
        **FLUX.split,
        "": {
            **FLUX.split[""],
            "controlnet_block_samples": SplitEach(split_dim=1, expected_dims=3),
            "controlnet_single_block_samples": SplitEach(split_dim=1, expected_dims=3),
        },
    },
)


def _flux_controlnet_model(controlnet) -> SequencePlan | None:
    """Flux's ControlNet: its blocks are Flux blocks, on the image tokens and their control condition, split alike.

    The text stays whole on every rank (`Replicated`), split at the first block rather than at the input: a union
    ControlNet prepends its mode token to the text in its forward, and a split text would then carry that token on
    every rank. Each residual is gathered where it is made (`controlnet_blocks.*`, one all-gather per residual) and
    handed to the transformer whole, whose plan splits it again: P times less ControlNet compute for one all-gather
    of its output per controlled block. Not covered (`None`, so the ControlNet runs whole): a condition that arrives
    as an image through `input_hint_block`, patchified by plain tensor code, and a ControlNet without double blocks.
    """
    if controlnet.input_hint_block is not None or len(controlnet.transformer_blocks) == 0:
        return None
    return SequencePlan(
        split={
            "": {
                "hidden_states": ContextParallelInput(split_dim=1, expected_dims=3),
                "controlnet_cond": ContextParallelInput(split_dim=1, expected_dims=3),
                "img_ids": _IMG_IDS,
            },
            "transformer_blocks.0": {"encoder_hidden_states": Replicated(split_dim=1, expected_dims=3)},
            "controlnet_blocks.*": ContextParallelOutput(gather_dim=1, expected_dims=3),
            "controlnet_single_blocks.*": ContextParallelOutput(gather_dim=1, expected_dims=3),
        },
    )


PLANS = {"FluxTransformer2DModel": _FLUX_WITH_RESIDUALS, "FluxControlNetModel": _flux_controlnet_model}
