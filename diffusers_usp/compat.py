"""Every private diffusers and torch name this package touches, in one place, each with the reason.

A diffusers or torch upgrade that moves one of them breaks `tests/test_compat.py`, which has one test per touch,
with the touch's name, instead of a forward deep inside a pipeline. The one exception is `caches.py`, which replaces
two private methods of diffusers' cache hooks (First Block Cache's decision, MagCache's calibration step) by versions
that reduce their statistics across ranks: it names them in its `PATCHES` table, checked by
`tests/test_caches.py::test_private_names_exist`. And `vae.py` wraps, per instance, an autoencoder's `_decode` and
`_encode` and each conv's `_conv_forward` (the input after its owning module padded it): `tests/test_compat.py`
checks those names.
"""

from __future__ import annotations

import copy
from datetime import timedelta

import torch
import torch.distributed as dist

# Functional collectives: the only form of an uneven all-to-all that Dynamo traces with its wait placed by Inductor
# (the ring's shift under torch.compile).
from torch.distributed import _functional_collectives as funcol  # noqa: F401 - re-exported

# The base of a mode that sees every aten op (private: `torch.utils._python_dispatch`): `vae_tiles.MetaShapes` runs a
# tile another rank decodes on the meta device, for its output's shape without its data or FLOPs.
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: F401 - re-exported

# torch 2.13 renamed `all_gather_into_tensor` (deprecated there) to `all_gather_single`; torch 2.11 has only the former.
all_gather_single = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor

# The fused attention kernels that also return the log-sum-exp, which an exact ring merge needs and neither SDPA nor
# diffusers' backends return: `(out, lse, ...)`, BHSD.
sdpa_cudnn_lse = torch.ops.aten._scaled_dot_product_cudnn_attention
sdpa_flash_lse = torch.ops.aten._scaled_dot_product_flash_attention
sdpa_efficient_lse = torch.ops.aten._scaled_dot_product_efficient_attention

# An assertion on a boolean tensor that does not synchronise with the host, and that Dynamo traces into a graph:
# under torch.compile, a separable per-query mask is checked on the device (`separable.py`).
assert_async = torch._assert_async

# Turns off `__torch_function__` of tensor subclasses: `PendingTensor` must read and fill its own storage without
# settling itself.
no_subclass_dispatch = torch._C.DisableTorchFunctionSubclass


# diffusers' context-parallel plan format (`_cp_plan`), from its private `_modeling_parallel`: not exported by
# `diffusers`. Our plans reuse it so that a model's own plan, where diffusers has one, is taken as it is. Imported on
# first use (PEP 562), so that the communication and attention modules, which import this one, import no diffusers.
_PLAN_FORMAT = ("ContextParallelInput", "ContextParallelOutput", "ContextParallelModelPlan")


def __getattr__(name: str):
    if name in _PLAN_FORMAT:
        from diffusers.models import _modeling_parallel

        return getattr(_modeling_parallel, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def group_timeout(group: dist.ProcessGroup | None = None) -> timedelta | None:
    """The timeout `group` (default: the world) was created with, or `None` where its backend does not say.

    torch has no public getter; the CFG and ring groups made inside a user's `group=` take its timeout from here.
    """
    group = group if group is not None else dist.group.WORLD
    for device in getattr(group, "_device_types", ()):
        try:
            return group._get_backend(device).options._timeout
        except (AttributeError, RuntimeError):  # a backend without options (a custom one): torch's default
            continue
    return None


def native_plan(model_cls: type):
    """diffusers' own `_cp_plan` of a transformer class (its native context-parallel plan), reused where it is right."""
    return model_cls._cp_plan


def default_processor_class(attn: torch.nn.Module) -> type | None:
    """The processor class an attention module uses by default (`_default_processor_cls`), or `None` if it says
    none: a bare `USPProcessor()` wraps it."""
    return getattr(attn, "_default_processor_cls", None)


def _get_backend(processor):
    return processor.processor._attention_backend


def _set_backend(processor, backend) -> None:
    processor.processor._attention_backend = backend


# diffusers' `set_attention_backend` sets `_attention_backend` on every processor that has one. A `USPProcessor`
# forwards it to the processor it wraps (the one that makes the kernel call: Ulysses runs the model's own kernel
# between its two all-to-alls); with none wrapped, or one without backends, `hasattr` is False, as on that processor.
forwarded_attention_backend = property(_get_backend, _set_backend)


def hook_registry(module: torch.nn.Module):
    """The diffusers `HookRegistry` of `module`, or `None` if it has none (without creating one, which
    `HookRegistry.check_if_exists_or_initialize` would: a registry wraps `forward`)."""
    return getattr(module, "_diffusers_hook", None)


def child_hook_registries(module: torch.nn.Module) -> list:
    """The diffusers hook registries below `module`'s (`_get_child_registries`: diffusers' own cached list, rebuilt
    after `enable_cache` / `disable_cache`). The step-cache sync reads the cache hooks from them."""
    registry = hook_registry(module)
    return list(registry._get_child_registries()) if registry is not None else []


def hook_names(module: torch.nn.Module) -> list[str]:
    """The names of `module`'s diffusers hooks, innermost first (the order they were registered in)."""
    registry = hook_registry(module)
    return list(registry._hook_order) if registry is not None else []


def move_outermost(module: torch.nn.Module, name: str) -> None:
    """Make hook `name` of `module` its outermost hook again. diffusers has no reorder call: remove and register."""
    registry = hook_registry(module)
    hook = registry.get_hook(name) if registry is not None else None
    if hook is not None and registry._hook_order[-1] != name:
        registry.remove_hook(name, recurse=False)
        registry.register_hook(hook, name)


def native_parallelism(module: torch.nn.Module):
    """The config diffusers' own `enable_parallelism` recorded on `module`, or `None`: its hooks would split the
    sequence a second time on top of ours, so each side refuses the other."""
    return getattr(module, "_parallel_config", None)


# FSDP2 (`shard_weights=True`): diffusers' cache hooks find blocks by exact class, and torch cannot undo `fully_shard`.


def register_cache_block_class(block: torch.nn.Module) -> None:
    """Tell diffusers' cache hooks that `fully_shard`'s class for a block (`FSDPFluxTransformerBlock`) is the block
    class it derives from: `enable_cache` (FirstBlockCache, ...) after sharding looks blocks up by exact class in
    `TransformerBlockRegistry` (private to diffusers 0.42)."""
    from diffusers.hooks._helpers import TransformerBlockRegistry

    fsdp_cls, cls = type(block), fsdp_original_class(block)
    try:
        metadata = TransformerBlockRegistry.get(cls)
    except ValueError:  # a class the cache hooks do not know (a text encoder's layer): nothing to tell them
        return
    TransformerBlockRegistry.register(fsdp_cls, copy.copy(metadata))  # a copy: `register` sets its `_cls`


def fsdp_original_class(unit: torch.nn.Module) -> type:
    """The class `fully_shard` derived `type(unit)` from: `FSDP<Orig>` has MRO `[FSDP<Orig>, FSDPModule, Orig, ...]`."""
    from torch.distributed.fsdp import FSDPModule

    return type(unit).__mro__[getattr(FSDPModule, "_orig_cls_mro_index", 2)]


def forget_fully_shard(unit: torch.nn.Module) -> None:
    """Remove what `fully_shard` installed on `unit`: its forward hooks, its class, its state and registry entries.

    torch has no public inverse of `fully_shard`. The attribute names are those of torch 2.13, the version tested
    (`tests/test_weights.py` shards, undoes and shards again; `tests/test_compat.py` checks the names)."""
    from torch.distributed._composable.contract import REGISTRY_KEY, STATE_KEY
    from torch.distributed._composable_state import _module_state_mapping

    state = unit._get_fsdp_state()
    for handle in {state._pre_forward_hook_handle, state._post_forward_hook_handle}:
        handle.remove()
    unit.__class__ = fsdp_original_class(unit)
    unit.__dict__.pop(STATE_KEY, None)
    unit.__dict__.pop(REGISTRY_KEY, None)
    _module_state_mapping.pop(unit, None)
    for module in unit.modules():
        for attr in ("_is_fsdp_managed_module", "_fsdp_use_orig_params"):
            module.__dict__.pop(attr, None)
