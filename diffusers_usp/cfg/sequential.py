"""Sequential CFG (Wan, Qwen-Image, Flux's true CFG, HunyuanVideo: a call inside `transformer.cache_context("cond")`,
then one inside `cache_context("uncond")`).

The cond call computes on CFG group 0 only and returns, on every rank, a `PendingTensor`; the uncond call computes on
group 1 only; one all-gather across the CFG axis then gives every rank both outputs, and the cond output fills the
pending tensor. Any use of a pending tensor before that first broadcasts group 0's output to group 1 (`settle`), so a
pipeline that never makes the uncond call still reads exact values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils._pytree import tree_flatten, tree_unflatten

from ..comm import all_gather_stacked
from ..compat import no_subclass_dispatch
from ..groups import Group
from .pending import PendingTensor, pending_tensor, plain
from .step import Computes, Step


@dataclass
class _Pair:
    """A cond output computed by CFG group 0 and not yet on group 1: its pending tensors, in output order."""

    placeholders: list[PendingTensor]
    metas: list[tuple]  # ("tensor", shape, dtype, device) of each


def _key(value):
    """A hashable description of a call's arguments: what its output's structure and shapes depend on."""
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), value.dtype, value.device)
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, *map(_key, value))
    if isinstance(value, dict):
        return ("dict", *((k, _key(v)) for k, v in sorted(value.items(), key=lambda item: str(item[0]))))
    hash(value)  # TypeError for an unhashable value: the call is then not cached
    return value


def _signature(name: str, args, kwargs):
    try:
        return name, _key(args), _key(kwargs)
    except TypeError:  # an unhashable argument: never paired, always computed whole
        return None


class SequentialCFG:
    """Pairs a step's cond and uncond calls across the two CFG groups.

    Args:
        axis (`Group`): the CFG axis.
        warn_once (`Callable[[str, str], None]`): the hook's warning, once per kind.
    """

    def __init__(self, axis: Group, warn_once: Callable[[str, str], None]) -> None:
        self.axis = axis
        self.warn_once = warn_once
        # Output structure (pytree spec and per-leaf shapes) of every call signature seen computed: group 1 builds the
        # first call's pending output from it without computing that call.
        self.outputs: dict = {}
        self.pending: _Pair | None = None
        self.solo = False  # a cond output was needed before its uncond call in this pipeline call

    def whole(self, args: tuple, kwargs: dict, key=None) -> Step:
        """Computed by both groups; its output structure recorded under `key` for later calls of the same
        signature."""

        def record(output):
            if key is not None:
                leaves, spec = tree_flatten(output)
                metas = [
                    ("tensor", tuple(x.shape), x.dtype, x.device) if isinstance(x, torch.Tensor) else ("value", x)
                    for x in leaves
                ]
                self.outputs[key] = (spec, metas)
            return output

        return Step(True, args, kwargs, record)

    def first(self, args: tuple, kwargs: dict) -> Step:
        self.settle("a cond call followed another cond call")
        key = _signature("cond", args, kwargs)
        known = self.outputs.get(key)
        if known is None or self.solo:
            return self.whole(args, kwargs, key)
        # Only group 0 computes (on CUDA its kernels are queued and the call returns at once); group 1 returns at once.
        return Step(
            self.axis.rank == 0, args, kwargs, lambda output: self._pending_output(known, output), Computes.ONE_GROUP
        )

    def _pending_output(self, known: tuple, output):
        """The first call's output on every rank, its tensors pending: group 0's computed ones, or empty ones of the
        shapes recorded for this signature."""
        spec, metas = known
        leaves = tree_flatten(output)[0] if output is not None else None
        out, pair = [], _Pair([], [])
        for i, meta in enumerate(metas):
            if meta[0] != "tensor":
                out.append(meta[1])
                continue
            _, shape, dtype, device = meta
            x = leaves[i].contiguous() if leaves is not None else torch.empty(shape, dtype=dtype, device=device)
            pair.placeholders.append(pending_tensor(x, self))
            pair.metas.append(meta)
            out.append(pair.placeholders[-1])
        self.pending = pair
        return tree_unflatten(out, spec)

    def second(self, args: tuple, kwargs: dict) -> Step:
        key = _signature("uncond", args, kwargs)
        known, pair = self.outputs.get(key), self.pending
        if pair is None or known is None:
            # No cond call waiting, or an uncond call of a signature not seen before (a new negative prompt length):
            # computed whole by both groups, which records its output structure for the next step.
            self.settle(None)
            return self.whole(args, kwargs, key)
        if [m for m in known[1] if m[0] == "tensor"] != pair.metas:
            self.settle("the cond and uncond outputs differ in shape or dtype, so they cannot be exchanged")
            return self.whole(args, kwargs, key)
        self.pending = None
        return Step(
            self.axis.rank == 1, args, kwargs, lambda output: self._exchange(known, pair, output), Computes.ONE_GROUP
        )

    def _exchange(self, known: tuple, pair: _Pair, output):
        """One all-gather per output tensor with the peer of the same Ulysses rank, [cond from group 0, uncond from
        group 1]: group 1's pending cond tensors take their values, and every rank returns the uncond output."""
        spec, metas = known
        leaves = tree_flatten(output)[0] if output is not None else None
        out, tensors = [], iter(pair.placeholders)
        for i, meta in enumerate(metas):
            if meta[0] != "tensor":
                out.append(meta[1])
                continue
            cond = next(tensors)
            mine = plain(cond) if leaves is None else leaves[i].contiguous()
            both = all_gather_stacked(mine.reshape(-1), self.axis).view(2, *mine.shape)
            with no_subclass_dispatch():
                if self.axis.rank == 1:
                    cond.set_(both[0])
                cond._usp_owner = None
            out.append(both[1] if leaves is None else leaves[i])
        return tree_unflatten(out, spec)

    def settle(self, reason: str | None) -> None:
        """Give every rank the values of the pending cond output, if any, by one broadcast from group 0 per tensor.
        Called where every rank is at the same point of the same program (a call, a use, the end of a pipeline
        call). With a `reason` (the pipeline did not pair its calls), warn once and compute the rest of this
        pipeline call's calls on both groups."""
        pair, self.pending = self.pending, None
        if pair is None:
            return
        for pending in pair.placeholders:
            pending._usp_owner = None  # first: the broadcast below must not settle again
        if reason is not None:
            self.solo = True  # the rest of this pipeline call computes each call on both groups
            self.warn_once(
                "unpaired",
                f"diffusers_usp CFG parallel: {reason}. That output was computed by one CFG group and broadcast to "
                "the other: exact, but without CFG parallelism; the rest of this pipeline call runs every call on "
                "both groups.",
            )
        for pending in pair.placeholders:
            dist.broadcast(plain(pending), group=self.axis.group, group_src=0)

    def end_of_pipeline_call(self) -> None:
        self.settle(None)
        self.solo = False
