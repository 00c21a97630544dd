"""`CFGHook`: the outermost hook on a transformer under CFG parallel. It picks a strategy per call, from what every
rank sees alike (the cache-context name, the input shapes), so the ranks agree without communicating about it:

- in `cache_context("cond")` / `("uncond")`: `SequentialCFG`, the two calls of one step on the two CFG groups;
- otherwise (one call on `cat([uncond, cond])`, or `cache_context("cond_uncond")`): `BatchedCFG`, each group takes
  half of the batch; a batch the groups cannot share (guidance off) runs whole on both.

docs/launching.md ("CFG parallel") has the guarantees and limits.
"""

from __future__ import annotations

import inspect
import warnings

import torch
from diffusers.hooks import HookRegistry, ModelHook
from diffusers.hooks.hooks import BaseState, StateManager
from torch.utils._pytree import tree_leaves

from ..compat import hook_registry, move_outermost
from ..groups import Group
from ..inputs import check_same_inputs, checksums
from ..plans import SequencePlan
from .batched import BatchedCFG, batchless
from .pending import PendingTensor
from .sequential import SequentialCFG
from .step import Computes, Step

HOOK = "usp_cfg"
_NOT_TRACED = (
    "diffusers_usp's CFG-parallel hook (cfg_degree=2) pairs the cond and uncond calls at run time and returns outputs "
    "that a later call fills, so it cannot be traced whole by torch.compile(fullgraph=True) or captured in one CUDA "
    "graph. Compile the transformer's blocks instead (`transformer.compile_repeated_blocks(fullgraph=True)`), or "
    "torch.compile the transformer without fullgraph, and capture with diffusers_usp.apply_cuda_graphs, which "
    "captures inside this hook."
)


class _NoState(BaseState):
    def reset(self) -> None:
        pass


class CFGHook(ModelHook):
    """Runs a transformer's CFG branches on the two groups of the CFG axis (see the module docstring).

    Args:
        axis (`Group`): the CFG axis: this rank and its peer of the same Ulysses rank in the other group.
        batchless (`dict`): what the batch split leaves whole (see `batched.batchless`).
        check_inputs (`bool`): on the first call, compare the inputs across the CFG axis (one all-reduce).
        warn (`bool`): warn once about calls that cannot run in parallel (off for ControlNets, which pipelines
            call outside the transformer's cache contexts).
    """

    _is_stateful = True  # so that diffusers' `cache_context` reaches `self.context`

    def __init__(self, axis: Group, batchless: dict, check_inputs: bool, warn: bool) -> None:
        super().__init__()
        self.axis = axis
        self.batchless = batchless
        self.checked = not check_inputs
        self.warn = warn
        # diffusers hands the cache context to every `StateManager` attribute of a stateful hook: this one is only
        # read for the context's name.
        self.context = StateManager(_NoState)
        self.warned: set[str] = set()
        self.sequential = SequentialCFG(axis, self._warn_once)
        self.batched: BatchedCFG | None = None
        # Read by the cache hooks (`caches.CacheSyncHook`): which ranks compute the current call, and the cache
        # contexts computed by one group only since the end of the last pipeline call.
        self.computes: Computes | None = None
        self.one_group: set[str] = set()

    def initialize_hook(self, module):
        self.batched = BatchedCFG(
            self.axis, self.batchless, list(inspect.signature(type(module).forward).parameters)[1:]
        )
        return module

    def reset_state(self, module):
        # diffusers calls this at the end of every pipeline call (`maybe_free_model_hooks`), on every rank.
        self.sequential.end_of_pipeline_call()
        self.one_group.clear()
        return module

    # Never traced, so that Dynamo does not trace the run-time pairing below. `recursive=False` lets the forward it
    # calls compile as a frame of its own: `torch.compile(transformer)` compiles the model around this hook, with a
    # graph break on each side; `fullgraph=True` refuses with `_NOT_TRACED`. The decisions before and after the
    # forward are disabled as a whole (`_begin`, `_finish`).
    @torch.compiler.disable(recursive=False, reason=_NOT_TRACED)
    def new_forward(self, module, *args, **kwargs):
        step = self._begin(module, args, kwargs)
        self.computes = step.computes
        if step.computes is Computes.ONE_GROUP:
            self.one_group.add(self.context_name())
        output = self.fn_ref.original_forward(*step.args, **step.kwargs) if step.compute else None
        return self._finish(step, output)

    @torch.compiler.disable
    def _begin(self, module, args: tuple, kwargs: dict) -> Step:
        if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
            raise RuntimeError(f"{type(module).__name__}: {_NOT_TRACED}")
        for x in tree_leaves((args, kwargs)):  # here, on every rank, not inside one group's call
            if type(x) is PendingTensor and x._usp_owner is not None:
                x._usp_owner.settle("a pending conditional output was passed to a transformer call")
        if not self.checked:
            # Ranks of one Ulysses group are compared by its own input check; this compares the two CFG groups.
            check_same_inputs(
                checksums([x for x in tree_leaves((args, kwargs)) if isinstance(x, torch.Tensor)]), self.axis
            )
            self.checked = True
        name = self.context_name()
        if name == "cond":
            return self.sequential.first(args, kwargs)
        if name == "uncond":
            return self.sequential.second(args, kwargs)
        self.sequential.settle(f"a call in cache_context({name!r})" if name else "a call outside cache_context")
        batch = self.batched.batch(args, kwargs)
        if batch is None or batch % self.axis.size:
            self._warn_once(
                "odd",
                f"diffusers_usp CFG parallel: a call with batch {batch} (guidance off, or a batch that "
                f"{self.axis.size} groups cannot share) runs whole on both CFG groups: exact, but without CFG "
                "parallelism.",
            )
            return Step(True, args, kwargs)
        return self.batched.step(args, kwargs, batch)

    @torch.compiler.disable
    def _finish(self, step: Step, output):
        return step.finish(output)

    def context_name(self) -> str | None:
        try:
            return self.context.context.name
        except ValueError:  # no cache context set: diffusers' `StateManager.context` says so by raising
            return None

    def _warn_once(self, kind: str, message: str) -> None:
        if self.warn and kind not in self.warned:
            self.warned.add(kind)
            warnings.warn(message, stacklevel=5)


def apply_cfg_parallel(model: torch.nn.Module, axis: Group, plan: SequencePlan, check_inputs: bool, warn: bool):
    """Register `CFGHook` on `model`, outermost: after the sequence-sharding hooks, so that they run per CFG group."""
    hook = CFGHook(axis, batchless(model, plan), check_inputs, warn)
    HookRegistry.check_if_exists_or_initialize(model).register_hook(hook, HOOK)


def remove_cfg_parallel(model: torch.nn.Module) -> None:
    """Remove `CFGHook` from `model`, settling a pending output first (on every rank, like `remove_parallelism`)."""
    registry = hook_registry(model)
    hook = registry.get_hook(HOOK) if registry is not None else None
    if hook is not None:
        hook.sequential.settle(None)
        registry.remove_hook(HOOK, recurse=False)


def cfg_hook(model: torch.nn.Module) -> CFGHook | None:
    """The `CFGHook` of `model`, or `None` without CFG parallel."""
    registry = hook_registry(model)
    return registry.get_hook(HOOK) if registry is not None else None


def cfg_axis(model: torch.nn.Module) -> Group | None:
    """The CFG axis `model` was parallelized with, or `None` without CFG parallel."""
    hook = cfg_hook(model)
    return hook.axis if hook is not None else None


def keep_outermost(model: torch.nn.Module) -> None:
    """Move `CFGHook` back to the outside of `model`'s hooks after another was registered around it.

    `apply_cuda_graphs` registers its hook last, so it would capture this one: a graph cannot hold its run-time
    pairing. Inside, each group captures only the calls it computes, and the CFG exchange runs eagerly between them.
    """
    move_outermost(model, HOOK)
