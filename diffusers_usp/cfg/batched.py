"""Batched CFG (SD3, CogVideoX, LTX, PixArt, AuraFlow: one call on `cat([uncond, cond])`): each CFG group takes its
half of the batch at the transformer's entry, and one all-gather across the CFG axis puts the batch back together at
its exit."""

from __future__ import annotations

import torch
from torch.utils._pytree import tree_map

from ..comm import all_gather_stacked
from ..groups import Group
from ..plans import SequencePlan
from .step import Computes, Step

# Per class, forward arguments whose tensors are not per sample although their dim 0 may equal the batch, beyond the
# plan's own (see `batchless`). Kandinsky 5 takes its RoPE positions as `arange`s and its sparse-attention masks per
# token.
NOT_PER_SAMPLE: dict[str, tuple[str, ...]] = {
    "Kandinsky5Transformer3DModel": ("visual_rope_pos", "text_rope_pos", "sparse_params"),
}


def batchless(model: torch.nn.Module, plan: SequencePlan) -> dict[str, tuple[tuple[int, int | None], ...] | None]:
    """What the batch split must leave whole among the forward arguments of `model`: argument name -> the
    `(split_dim, expected_dims)` its plan splits it by (a tensor whose dim 0 is such a sequence dim counts tokens,
    not samples: Flux's `img_ids` and `txt_ids` `[S, 3]`, CogVideoX's rotary `(cos, sin)` `[S, D]`), or `None` for
    the `NOT_PER_SAMPLE` arguments."""

    def dims(spec) -> tuple[tuple[int, int | None], ...]:
        if isinstance(spec, (list, tuple)):
            return tuple(d for s in spec for d in dims(s))
        dim = getattr(spec, "split_dim", None)
        return ((dim, getattr(spec, "expected_dims", None)),) if isinstance(dim, int) else ()

    rules = {name: dims(spec) for name, spec in plan.split.get("", {}).items() if isinstance(name, str)}
    rules.update((name, None) for name in NOT_PER_SAMPLE.get(type(model).__name__, ()))
    return rules


def _per_sample(x, batch: int) -> bool:
    return isinstance(x, torch.Tensor) and x.dim() > 0 and x.shape[0] == batch


def _tokens_first(x: torch.Tensor, split_dim: int, expected_dims: int | None) -> bool:
    """Whether a plan spec makes dim 0 of `x` its sequence dim (diffusers' rule: a tensor of another rank than
    `expected_dims` is not a sequence)."""
    if expected_dims is not None and x.dim() != expected_dims:
        return False
    return -x.dim() <= split_dim < x.dim() and split_dim % x.dim() == 0


class BatchedCFG:
    """Splits one call's batch across the CFG axis and gathers its output back.

    Args:
        axis (`Group`): the CFG axis (this rank and its peer of the same Ulysses rank in the other group).
        batchless (`dict`): what the split leaves whole (see `batchless`).
        params (`list[str]`): the transformer's forward parameters after `self`, to name positional arguments.
    """

    def __init__(self, axis: Group, batchless: dict, params: list[str]) -> None:
        self.axis = axis
        self.batchless = batchless
        self.params = params

    def batch(self, args: tuple, kwargs: dict) -> int | None:
        """The batch of the call's first argument (the latents), or `None` if it has none."""
        latents = args[0] if args else kwargs.get(self.params[0]) if self.params else None
        return latents.shape[0] if isinstance(latents, torch.Tensor) and latents.dim() else None

    def step(self, args: tuple, kwargs: dict, batch: int) -> Step:
        local, rank = batch // self.axis.size, self.axis.rank

        def split(name, value):
            token_dims = self.batchless.get(name, ())
            if token_dims is None:
                return value

            def cut(x):
                if not _per_sample(x, batch) or any(_tokens_first(x, *dims) for dims in token_dims):
                    return x
                return x.narrow(0, rank * local, local)

            return tree_map(cut, value)

        names = self.params + [None] * max(len(args) - len(self.params), 0)
        args = tuple(split(name, value) for name, value in zip(names, args))
        kwargs = {name: split(name, value) for name, value in kwargs.items()}

        def gather(output):
            # (2, B/2, ...) -flatten-> (B, ...): group 0's half first, as it was split.
            return tree_map(
                lambda x: all_gather_stacked(x.contiguous(), self.axis).flatten(0, 1) if _per_sample(x, local) else x,
                output,
            )

        return Step(True, args, kwargs, gather, Computes.SPLIT)
