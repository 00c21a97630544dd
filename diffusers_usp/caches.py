"""Step caches in step across ranks: diffusers' cache hooks (`transformer.enable_cache(...)`) take, under
`parallelize`, the decision one process takes on the same inputs, on every rank.

A cache decides per step whether to skip blocks. Where it decides from the tokens (First Block Cache's relative
change of the first block's residual; MagCache's calibration ratios), each rank sees only its own shard: left alone,
one rank skips the remaining blocks and their all-to-alls while another runs them, and every rank then waits in a
collective until the group times out. `CacheSyncHook` replaces that local statistic by the global one: one all-reduce
of the sums the statistic divides (numerator and denominator, or sum and count), then the hook's own threshold test
on the totals. Hooks that decide by schedule (TaylorSeer, Pyramid Attention Broadcast, FasterCache, MagCache's
inference, SeaCache on Wan, whose indicator is the full latent every rank holds) need nothing and get nothing.

The hook sits on the transformer's root and inspects the cache hooks at every forward, so `enable_cache` before or
after `parallelize`, and `disable_cache`, all work. Every private diffusers name this touches is in this module.

Under CFG parallel (`cfg_degree=2`), a call the two CFG groups share along the batch reduces over both groups (the
one-process statistic is over the whole batch); a call one group computes alone (a sequential cond or uncond call)
reduces over that group's ranks, and its cache state lives on that group only.
"""

from __future__ import annotations

from datetime import timedelta
from types import MethodType

import torch
import torch.distributed as dist
from diffusers.hooks import HookRegistry, ModelHook
from diffusers.hooks.faster_cache import FasterCacheBlockHook, FasterCacheDenoiserHook
from diffusers.hooks.first_block_cache import FBCHeadBlockHook
from diffusers.hooks.mag_cache import MagCacheBlockHook, MagCacheHeadHook
from diffusers.hooks.pyramid_attention_broadcast import PyramidAttentionBroadcastHook
from diffusers.hooks.taylorseer_cache import TaylorSeerCacheHook

from .cfg import Computes, cfg_hook
from .compat import child_hook_registries, hook_registry
from .groups import Group, reused

_HOOK = "usp_caches"

# Hooks whose state is kept per cache context (`cond`, `uncond`): under sequential CFG parallel, each group holds
# only its own branch's.
_PER_CONTEXT = (FBCHeadBlockHook, MagCacheHeadHook, TaylorSeerCacheHook)
# Hooks whose state counts every call of their module, whatever the context, or that split the batch into its
# unconditional and conditional halves themselves: under CFG parallel each group sees other calls or other halves.
_WHOLE_BATCH = (PyramidAttentionBroadcastHook, FasterCacheDenoiserHook, FasterCacheBlockHook)


def _fbc_should_compute(hook: FBCHeadBlockHook, reduce) -> callable:
    """First Block Cache's decision from the whole sequence. diffusers computes
    `mean(|r - r_prev|) / mean(|r_prev|)` over this rank's tokens; both means count the same elements, so the ratio is
    `sum(|r - r_prev|) / sum(|r_prev|)`, and the two sums add up across ranks (float64: far below the float32 noise
    of the one-process means)."""

    @torch.compiler.disable
    def should_compute(self, residual: torch.Tensor) -> bool:
        previous = self.state_manager.get_state().head_block_residual  # private: the hook's state
        if previous is None:  # the same on every rank: the first step of a context
            return True
        sums = torch.stack(
            [(residual - previous).abs().sum(dtype=torch.float64), previous.abs().sum(dtype=torch.float64)]
        )
        numerator, denominator = reduce(sums).tolist()
        return numerator / denominator > self.threshold

    return MethodType(should_compute, hook)


def _mag_calibration_step(hook: MagCacheBlockHook, reduce) -> callable:
    """MagCache's calibration ratio from the whole sequence: diffusers takes the mean over this rank's tokens of
    `|r_t| / |r_{t-1}|` (per-token norms); the sum and the count add up across ranks (uneven splits count unequally)."""

    @torch.compiler.disable
    def calibration_step(self, state, current_residual: torch.Tensor) -> None:
        if state.previous_residual is None:
            ratio = 1.0
        else:
            current = torch.linalg.norm(current_residual.float(), dim=-1)
            previous = torch.linalg.norm(state.previous_residual.float(), dim=-1)
            ratios = current / (previous + 1e-8)  # diffusers' epsilon
            total, count = reduce(
                torch.stack([ratios.sum(dtype=torch.float64), ratios.new_tensor(ratios.numel(), dtype=torch.float64)])
            ).tolist()
            ratio = total / count
        state.calibration_ratios.append(ratio)

    return MethodType(calibration_step, hook)


# The private methods replaced, per hook class: (method name, replacement factory, which instances). One place, so a
# diffusers upgrade that renames one breaks `test_caches.py::test_private_names_exist`, not a forward.
PATCHES = {
    FBCHeadBlockHook: ("_should_compute_remaining_blocks", _fbc_should_compute, lambda hook: True),
    MagCacheBlockHook: ("_perform_calibration_step", _mag_calibration_step, lambda hook: hook.is_tail),
}


class CacheSyncHook(ModelHook):
    """Keeps the cache hooks inside one transformer deciding alike on every rank (see the module docstring).

    Args:
        sequence (`Group`): the ranks that split one sequence.
        ranks (`tuple[int, ...]`): the global ranks of the whole parallelized model (both CFG groups), reduced over by
            a batched call split between the CFG groups.
        timeout (`datetime.timedelta`, *optional*): the timeout of that group of all ranks, made on first use.
    """

    def __init__(self, sequence: Group, ranks: tuple[int, ...], timeout: timedelta | None) -> None:
        super().__init__()
        self.sequence = sequence
        self.ranks = ranks
        self.timeout = timeout
        self.patched: list[tuple[ModelHook, str]] = []
        self.computes: Computes | None = None  # which ranks compute this call (`cfg.CFGHook`), None without CFG

    def pre_forward(self, module, *args, **kwargs):
        # Not while compiling: the scan below would be traced, guarded on every registry. A cache enabled before
        # `parallelize` is synced from there on (`apply_cache_sync` scans once), one enabled later from the next
        # eager forward (`compile_repeated_blocks` keeps the root eager).
        if len(self.ranks) > 1 and not torch.compiler.is_compiling():
            self.sync(module)
        return args, kwargs

    def sync(self, module: torch.nn.Module) -> None:
        """Refuse what cannot be exact, and replace the local statistics of cache hooks not yet synced."""
        cfg = cfg_hook(module)
        self.computes = computes = cfg.computes if cfg is not None else None
        hooks = _cache_hooks(module)
        if cfg is not None and hooks:
            self._refuse_under_cfg(module, cfg, computes, hooks)
        for hook in hooks:
            patch = PATCHES.get(type(hook))
            if patch is not None and patch[2](hook) and not getattr(hook, "_usp_synced", False):
                name, factory, _ = patch
                setattr(hook, name, factory(hook, self._reduce))
                hook._usp_synced = True
                self.patched.append((hook, name))

    def _refuse_under_cfg(self, module, cfg, computes: Computes | None, hooks: list[ModelHook]) -> None:
        """Raise, on every rank that computes this call, where CFG parallel cannot keep a cache exact. Every rank
        takes the same CFG decisions, so the ranks that do not compute this call raise at their next computed one,
        before any collective."""
        name = type(module).__name__
        whole = sorted({type(h).__name__ for h in hooks if isinstance(h, _WHOLE_BATCH)})
        if whole:
            raise RuntimeError(
                f"{name}: {', '.join(whole)} under CFG parallel (cfg_degree=2) is not supported: it counts every call "
                "of its module or splits the batch into its CFG halves itself, and each CFG group sees only its own "
                "calls or half. Use First Block Cache, MagCache or TaylorSeer, or parallelize without cfg_degree."
            )
        context = cfg.context_name()
        if (
            computes is Computes.BOTH and context in cfg.one_group
        ):  # both groups compute a branch only one group followed
            stateful = sorted({type(h).__name__ for h in hooks if isinstance(h, _PER_CONTEXT)})
            if stateful:
                raise RuntimeError(
                    f"{name}: a cache_context({context!r}) call ran on both CFG groups after calls of that context "
                    f"that one group computed alone in this pipeline call, and {', '.join(stateful)} keeps each "
                    "branch's state on the group that computes it, so the other group's is stale. Pair every cond "
                    "call with an uncond call (and use the cond output only after it) while a cache is enabled, or "
                    "parallelize without cfg_degree."
                )

    def _reduce(self, sums: torch.Tensor) -> torch.Tensor:
        """`sums` added over the ranks that computed this call (its sequence group, or all ranks of a batch split
        between the CFG groups)."""
        if self.computes is Computes.SPLIT:
            group = reused(("caches", self.ranks, self.timeout), self._all_ranks)  # collective: every rank computes
        else:
            group = self.sequence.group if self.sequence.size > 1 else None
            if group is None:
                return sums
        dist.all_reduce(sums, group=group)
        return sums

    def _all_ranks(self) -> dist.ProcessGroup:
        return dist.new_group(list(self.ranks), timeout=self.timeout, use_local_synchronization=True)

    def restore(self) -> None:
        """Give the patched cache hooks their own methods back (`remove_parallelism`)."""
        for hook, name in self.patched:
            hook.__dict__.pop(name, None)
            hook._usp_synced = False
        self.patched.clear()


def _cache_hooks(module: torch.nn.Module) -> list[ModelHook]:
    """The diffusers cache hooks of `module`'s tree. `_get_child_registries` (private) is diffusers' own cached list of
    the registries below the root, rebuilt after `enable_cache`/`disable_cache`; the blocks are read directly too, for
    a cache applied with `apply_first_block_cache` & co. after the list was cached."""
    registries = child_hook_registries(module)
    for blocks in module.children():
        if isinstance(blocks, torch.nn.ModuleList) and len(blocks):
            registry = hook_registry(blocks[0])
            if registry is not None and registry not in registries:
                registries += [hook_registry(b) for b in blocks]
    known = (*PATCHES, *_PER_CONTEXT, *_WHOLE_BATCH)
    return [
        h
        for r in (hook_registry(module), *registries)
        if r is not None
        for h in r.hooks.values()
        if isinstance(h, known)
    ]


def apply_cache_sync(model: torch.nn.Module, sequence: Group, ranks: tuple[int, ...], timeout) -> None:
    """Register `CacheSyncHook` on `model` (after its sequence-sharding hooks, so that it runs before them), and sync
    the caches already enabled."""
    hook = CacheSyncHook(sequence, ranks, timeout)
    HookRegistry.check_if_exists_or_initialize(model).register_hook(hook, _HOOK)
    if len(ranks) > 1:
        hook.sync(model)


def remove_cache_sync(model: torch.nn.Module) -> None:
    registry = hook_registry(model)
    hook = registry.get_hook(_HOOK) if registry is not None else None
    if hook is not None:
        hook.restore()
        registry.remove_hook(_HOOK, recurse=False)
