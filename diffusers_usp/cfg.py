"""CFG parallel: the conditional and unconditional branches of classifier-free guidance on two groups of ranks, each
running Ulysses inside itself, with the pipeline's code unchanged.

diffusers pipelines run CFG in one of two ways; `CFGHook`, the outermost hook on the transformer, serves both:

- Batched (SD3, CogVideoX, LTX, PixArt, AuraFlow: one call on `cat([uncond, cond])`, outside any `cache_context` or
  in `cache_context("cond_uncond")`): each CFG group takes its half of the batch at the transformer's entry, and one
  all-gather across the CFG axis puts the batch back together at its exit. An odd batch (guidance off) runs whole on
  both groups.
- Sequential (Wan, Qwen-Image, Flux's true CFG, HunyuanVideo: a call inside `transformer.cache_context("cond")`,
  then one inside `cache_context("uncond")`): the cond call computes on CFG group 0 only and returns, on every rank, a
  `PendingTensor`; the uncond call computes on group 1 only; one all-gather across the CFG axis then gives every
  rank both outputs, and the cond output fills the pending tensor. Any use of a pending tensor before that first
  broadcasts group 0's output to group 1, so a pipeline that never makes the uncond call still reads exact values.

Every decision here is taken from what every rank sees alike (the call order, cache-context names, input shapes,
uses of the pending output), so the ranks agree without communicating about it. docs/launching.md ("CFG parallel")
has the guarantees and limits.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
from diffusers.hooks import HookRegistry, ModelHook
from diffusers.hooks.hooks import BaseState, StateManager
from torch.utils._pytree import tree_flatten, tree_leaves, tree_map, tree_unflatten

from .comm import _all_gather_stacked
from .pending import PendingTensor, pending_tensor, plain
from .plans import SequencePlan
from .sharding import _check_same_inputs
from .state import UlyssesGroup

_HOOK = "usp_cfg"
_NOT_TRACED = (
    "diffusers_usp's CFG-parallel hook (cfg_degree=2) pairs the cond and uncond calls at run time and returns outputs "
    "that a later call fills, so it cannot be traced whole by torch.compile(fullgraph=True) or captured in one CUDA "
    "graph. Compile the transformer's blocks instead (`transformer.compile_repeated_blocks(fullgraph=True)`), or "
    "torch.compile the transformer without fullgraph, and capture with diffusers_usp.apply_cuda_graphs, which "
    "captures inside this hook."
)

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


class _ContextName(StateManager):
    """Receives the name of diffusers' `cache_context`: `_set_cache_context` hands the context to every
    `StateManager` attribute of a stateful hook, on entry and (as `None`) on exit."""

    def __init__(self) -> None:
        super().__init__(BaseState)
        self.name: str | None = None

    def set_context(self, context) -> None:
        super().set_context(context)
        self.name = None if context is None else context.name


@dataclass
class _Pair:
    """A cond output computed by CFG group 0 and not yet on group 1: its pending tensors, in output order."""

    placeholders: list[PendingTensor]
    metas: list[tuple]  # ("tensor", shape, dtype, device) of each


@dataclass
class _Step:
    """What this rank does for one call: `compute` the forward on `args`, `kwargs` (or not), then finish by `kind`:
    `"whole"` (return it; record its structure under `key`), `"first"` and `"second"` (a sequential pair's calls,
    `known` being the recorded structure of their signature), `"split"` (gather its batch of `local` per group)."""

    kind: str
    compute: bool
    args: tuple
    kwargs: dict
    key: object = None
    known: tuple | None = None
    pair: _Pair | None = None
    local: int = 0


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


def _per_sample(x, batch: int) -> bool:
    return isinstance(x, torch.Tensor) and x.dim() > 0 and x.shape[0] == batch


def _tokens_first(x: torch.Tensor, split_dim: int, expected_dims: int | None) -> bool:
    """Whether a plan spec makes dim 0 of `x` its sequence dim (diffusers' rule: a tensor of another rank than
    `expected_dims` is not a sequence)."""
    if expected_dims is not None and x.dim() != expected_dims:
        return False
    return -x.dim() <= split_dim < x.dim() and split_dim % x.dim() == 0


class CFGHook(ModelHook):
    """Runs a transformer's CFG branches on the two groups of the CFG axis (see the module docstring).

    Args:
        axis (`UlyssesGroup`): the CFG axis: this rank and its peer of the same Ulysses rank in the other group.
        batchless (`dict`): what the batch split leaves whole (see `batchless`).
        check_inputs (`bool`): on the first call, compare the inputs across the CFG axis (one all-reduce).
        warn (`bool`): warn once about calls that cannot run in parallel (off for ControlNets, which pipelines
            call outside the transformer's cache contexts).
    """

    _is_stateful = True  # so that diffusers' `cache_context` reaches `self.context`

    def __init__(self, axis: UlyssesGroup, batchless: dict, check_inputs: bool, warn: bool) -> None:
        super().__init__()
        self.axis = axis
        self.batchless = batchless
        self.checked = not check_inputs
        self.warn = warn
        self.context = _ContextName()
        self.params: list[str] = []
        # Output structure (pytree spec and per-leaf shapes) of every sequential call signature seen computed: group
        # 1 builds the first call's pending output from it without computing that call.
        self.outputs: dict = {}
        self.pending: _Pair | None = None
        self.solo = False  # a cond output was needed before its uncond call in this pipeline call
        self.warned: set[str] = set()
        self.kind: str | None = None  # the current call's `_Step.kind`
        self.one_group: set[str] = set()  # cache contexts computed by one group only since the last reset

    def initialize_hook(self, module):
        self.params = list(inspect.signature(type(module).forward).parameters)[1:]
        return module

    def reset_state(self, module):
        # diffusers calls this at the end of every pipeline call (`maybe_free_model_hooks`), on every rank.
        self.settle(None)
        self.solo = False
        self.one_group.clear()
        return module

    # Never traced, so that Dynamo does not trace the run-time pairing below. `recursive=False` lets the forward it
    # calls compile as a frame of its own: `torch.compile(transformer)` compiles the model around this hook, with a
    # graph break on each side; `fullgraph=True` refuses with `_NOT_TRACED`. The decisions before and after the
    # forward are disabled as a whole (`_begin`, `_end`).
    @torch.compiler.disable(recursive=False, reason=_NOT_TRACED)
    def new_forward(self, module, *args, **kwargs):
        step = self._begin(module, args, kwargs)
        self.kind = step.kind  # read by caches.CacheSyncHook: which ranks compute this call
        if step.kind in ("first", "second"):
            self.one_group.add(self.context.name)
        output = self.fn_ref.original_forward(*step.args, **step.kwargs) if step.compute else None
        return self._end(step, output)

    @torch.compiler.disable
    def _begin(self, module, args: tuple, kwargs: dict) -> _Step:
        if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
            raise RuntimeError(f"{type(module).__name__}: {_NOT_TRACED}")
        for x in tree_leaves((args, kwargs)):  # here, on every rank, not inside one group's call
            if type(x) is PendingTensor and x._usp_owner is not None:
                x._usp_owner.settle("a pending conditional output was passed to a transformer call")
        if not self.checked:
            # Ranks of one Ulysses group are compared by its own input check; this compares the two CFG groups.
            _check_same_inputs([x for x in tree_leaves((args, kwargs)) if isinstance(x, torch.Tensor)], self.axis)
            self.checked = True
        name = self.context.name
        if name == "cond":
            return self._first(args, kwargs)
        if name == "uncond":
            return self._second(args, kwargs)
        self.settle(f"a call in cache_context({name!r})" if name else "a call outside cache_context")
        return self._batched(args, kwargs)

    @torch.compiler.disable
    def _end(self, step: _Step, output):
        if step.kind == "whole":
            if step.key is not None:  # recorded for later calls of the same signature
                leaves, spec = tree_flatten(output)
                metas = [
                    ("tensor", tuple(x.shape), x.dtype, x.device) if isinstance(x, torch.Tensor) else ("value", x)
                    for x in leaves
                ]
                self.outputs[step.key] = (spec, metas)
            return output
        if step.kind == "first":
            return self._pending_output(step.known, output)
        if step.kind == "second":
            return self._exchange(step.known, step.pair, output)
        # (2, B/2, ...) -flatten-> (B, ...): group 0's half first, as it was split.
        return tree_map(
            lambda x: _all_gather_stacked(x.contiguous(), self.axis).flatten(0, 1) if _per_sample(x, step.local) else x,
            output,
        )

    # -- sequential: two calls per step ---------------------------------------------------------------------------

    def _first(self, args, kwargs) -> _Step:
        self.settle("a cond call followed another cond call")
        key = self._signature("cond", args, kwargs)
        known = self.outputs.get(key)
        if known is None or self.solo:
            return _Step("whole", True, args, kwargs, key=key)
        # Only group 0 computes (on CUDA its kernels are queued and the call returns at once); group 1 returns at once.
        return _Step("first", self.axis.rank == 0, args, kwargs, known=known)

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

    def _second(self, args, kwargs) -> _Step:
        key = self._signature("uncond", args, kwargs)
        known, pair = self.outputs.get(key), self.pending
        if pair is None or known is None:
            # No cond call waiting, or an uncond call of a signature not seen before (a new negative prompt length):
            # computed whole by both groups, which records its output structure for the next step.
            self.settle(None)
            return _Step("whole", True, args, kwargs, key=key)
        if [m for m in known[1] if m[0] == "tensor"] != pair.metas:
            self.settle("the cond and uncond outputs differ in shape or dtype, so they cannot be exchanged")
            return _Step("whole", True, args, kwargs, key=key)
        self.pending = None
        return _Step("second", self.axis.rank == 1, args, kwargs, known=known, pair=pair)

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
            both = _all_gather_stacked(mine.reshape(-1), self.axis).view(2, *mine.shape)
            with torch._C.DisableTorchFunctionSubclass():
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
            self._warn_once(
                "unpaired",
                f"diffusers_usp CFG parallel: {reason}. That output was computed by one CFG group and broadcast to "
                "the other: exact, but without CFG parallelism; the rest of this pipeline call runs every call on "
                "both groups.",
            )
        for pending in pair.placeholders:
            dist.broadcast(plain(pending), group=self.axis.group, group_src=0)

    def _signature(self, name: str, args, kwargs):
        try:
            return name, _key(args), _key(kwargs)
        except TypeError:  # an unhashable argument: never paired, always computed whole
            return None

    # -- batched: one call on cat([uncond, cond]) -----------------------------------------------------------------

    def _batched(self, args, kwargs) -> _Step:
        latents = args[0] if args else kwargs.get(self.params[0]) if self.params else None
        size, rank = self.axis.size, self.axis.rank
        if not isinstance(latents, torch.Tensor) or latents.dim() == 0 or latents.shape[0] % size:
            batch = latents.shape[0] if isinstance(latents, torch.Tensor) and latents.dim() else None
            self._warn_once(
                "odd",
                f"diffusers_usp CFG parallel: a call with batch {batch} (guidance off, or a batch that "
                f"{size} groups cannot share) runs whole on both CFG groups: exact, but without CFG parallelism.",
            )
            return _Step("whole", True, args, kwargs)
        batch = latents.shape[0]
        local = batch // size

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
        return _Step("split", True, args, kwargs, local=local)

    def _warn_once(self, kind: str, message: str) -> None:
        if self.warn and kind not in self.warned:
            self.warned.add(kind)
            warnings.warn(message, stacklevel=5)


def apply_cfg_parallel(model: torch.nn.Module, axis: UlyssesGroup, plan: SequencePlan, check_inputs: bool, warn: bool):
    """Register `CFGHook` on `model`, outermost: after the sequence-sharding hooks, so that they run per CFG group."""
    hook = CFGHook(axis, batchless(model, plan), check_inputs, warn)
    HookRegistry.check_if_exists_or_initialize(model).register_hook(hook, _HOOK)


def remove_cfg_parallel(model: torch.nn.Module) -> None:
    """Remove `CFGHook` from `model`, settling a pending output first (on every rank, like `remove_parallelism`)."""
    registry = getattr(model, "_diffusers_hook", None)
    hook = registry.get_hook(_HOOK) if registry is not None else None
    if hook is not None:
        hook.settle(None)
        registry.remove_hook(_HOOK, recurse=False)


def keep_outermost(model: torch.nn.Module) -> None:
    """Move `CFGHook` back to the outside of `model`'s hooks after another was registered around it.

    `apply_cuda_graphs` registers its hook last, so it would capture this one: a graph cannot hold its run-time
    pairing. Inside, each group captures only the calls it computes, and the CFG exchange runs eagerly between them.
    """
    registry = getattr(model, "_diffusers_hook", None)
    hook = registry.get_hook(_HOOK) if registry is not None else None
    if hook is not None and registry._hook_order[-1] != _HOOK:
        registry.remove_hook(_HOOK, recurse=False)
        registry.register_hook(hook, _HOOK)
