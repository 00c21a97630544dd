"""Sequence plans: for each transformer class, where the sequence is split and gathered, as data.

A plan is diffusers' `_cp_plan` (module path -> `ContextParallelInput`s to split, or `ContextParallelOutput`s to
gather) plus what Ulysses needs that `_cp_plan` does not say: which attention modules attend to replicated K/V
(cross-attention, no collective) and where replicated joint tokens sit. Adding a model means adding an entry here.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

import torch
from diffusers.models._modeling_parallel import (
    ContextParallelInput,
    ContextParallelModelPlan,
    ContextParallelOutput,
)


@dataclass(frozen=True)
class SplitOrReplicate(ContextParallelInput):
    """Split along `split_dim` when P divides its length; otherwise keep it whole on every rank.

    For joint text tokens: sharded text divides the text MLPs and projections by P too, so it is the fast path; when
    the text length does not divide by P, the text stays whole and attention treats it as a replicated block (sliced
    by head locally, its output rows carried by the output all-to-all).
    """


@dataclass(frozen=True)
class SequencePlan:
    """How one transformer class takes Ulysses sequence parallelism.

    Args:
        split (`dict`):
            diffusers' `_cp_plan` format: module path ("" is the transformer, "*" any child) to a dict of inputs to
            split (`ContextParallelInput`, keyed by forward parameter name or, with `split_output=True`, output
            index), or to the `ContextParallelOutput`(s) to gather from its output.
        cross_attention (`tuple[str, ...]`):
            Glob patterns of attention module paths whose keys and values come only from replicated tokens (text).
            Their queries are sharded and they need no collective. All other attention modules are sharded
            self-attention.
        replicated_front (`bool`):
            Whether joint text tokens precede the sharded tokens in the attention sequence (Flux) or follow them.
    """

    split: ContextParallelModelPlan
    cross_attention: tuple[str, ...] = ()
    replicated_front: bool = True

    def __post_init__(self):
        if not any(
            isinstance(v, (ContextParallelOutput, list, tuple)) for v in self.split.values()
        ):  # a plan that never gathers would return one rank's slice as the model output
            raise ValueError("A SequencePlan must gather its output with a ContextParallelOutput.")

    def is_cross_attention(self, module_path: str) -> bool:
        return any(fnmatchcase(module_path, pattern) for pattern in self.cross_attention)


def _flux() -> SequencePlan:
    # Text is joint with the image (prepended) in every block; shard it with the image when P divides its length.
    return SequencePlan(
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


def _wan() -> SequencePlan:
    from diffusers import WanTransformer3DModel

    # diffusers' own plan is right for Wan: split the rotary tables and the patch-embedded tokens, gather after
    # proj_out. Text reaches the video only through cross-attention (attn2), which needs no collective.
    return SequencePlan(split=WanTransformer3DModel._cp_plan, cross_attention=("blocks.*.attn2",))


# Class name -> plan factory (factories keep diffusers' model imports lazy).
PLANS = {
    "FluxTransformer2DModel": _flux,
    "WanTransformer3DModel": _wan,
}


def plan_for(transformer: torch.nn.Module) -> SequencePlan | None:
    """The plan registered for `transformer`'s exact class, if any (a subclass may change its forward)."""
    factory = PLANS.get(type(transformer).__name__)
    return factory() if factory is not None else None
