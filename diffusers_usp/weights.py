"""Weights sharded across the ranks that run the same forwards: each repeated block (and the rest of the model) is a
torch FSDP2 `fully_shard` unit on a 1-D `DeviceMesh` of those ranks, gathered just before it runs and freed after.

Ulysses divides activations, not weights: a 32B transformer in bf16 (64 GB) does not fit an 80 GB card beside its
text encoder, however many cards there are. Here each rank stores 1/P of every parameter (dim-0 shards, as DTensors)
and the forward of each unit all-gathers its full weights, runs, and frees them again. Block i's gather is issued when
block i - 1 starts (explicit forward prefetch), so it overlaps compute: at most 2 blocks are whole at any time.

Inference only: the parameters are frozen (`requires_grad=False`, which also lets a block mix bf16 weights with the
float32 norms of `_keep_in_fp32_modules`: FSDP2 needs one dtype only among parameters that train), and there is no
mixed-precision policy, so the gathered weights are the original tensors bit for bit and the output is exact.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
from diffusers.hooks import HookRegistry, ModelHook
from torch import nn

from .cfg import keep_outermost
from .compat import forget_fully_shard, register_cache_block_class
from .components import CUDA_GRAPH_HOOK

_ATTR = "_usp_weights"  # on every model this module sharded: its `ShardedWeights`
_HOOK = "usp_weights"


@dataclass
class ShardedWeights:
    """What `shard_weights` did to one model, kept on it for `unshard_weights`.

    Args:
        units (`list[nn.Module]`): the `fully_shard` units, blocks first and the model itself last.
        requires_grad (`dict[str, bool]`): each parameter's flag before it was frozen, by name.
        group (`torch.distributed.ProcessGroup`): the ranks the weights are sharded over.
    """

    units: list[nn.Module]
    requires_grad: dict[str, bool]
    group: dist.ProcessGroup


def repeated_blocks(model: nn.Module) -> list[nn.ModuleList]:
    """The block lists of `model`, in the order they are registered: every `nn.ModuleList` of at least 2 modules of
    one class that no other such list contains (Flux's `transformer_blocks` and `single_transformer_blocks`, Wan's
    `blocks`, T5's `encoder.block`, CLIP's `text_model.encoder.layers`, Qwen2.5-VL's decoder layers and vision blocks).
    A list inside a block (T5's per-block `layer`, of 2 classes) is part of that block's unit."""
    found: list[nn.ModuleList] = []
    taken: set[str] = set()
    for path, module in model.named_modules():
        if any(path.startswith(prefix + ".") for prefix in taken):
            continue
        if isinstance(module, nn.ModuleList) and len(module) >= 2 and len({type(m) for m in module}) == 1:
            found.append(module)
            taken.add(path)
    return found


def _mesh(group: dist.ProcessGroup):
    from torch.distributed.device_mesh import DeviceMesh  # here: importing it costs every user of this package

    device_type = "cpu" if dist.get_backend(group) == "gloo" else torch.accelerator.current_accelerator().type
    return DeviceMesh.from_group(group, device_type, mesh_dim_names=("shard",))


def shard_weights(model: nn.Module, group: dist.ProcessGroup, prefetch: bool = True) -> nn.Module:
    """Shard `model`'s parameters over the ranks of `group` with FSDP2: one unit per repeated block, one for the rest.

    Every rank of `group` must run every forward of `model` (FSDP2 gathers each unit's weights with a collective of
    `group`), and call this in the same order. Parameters are frozen (inference only).

    Args:
        model (`nn.Module`): a transformer, ControlNet or text encoder, on the device of `group`'s backend.
        group (`torch.distributed.ProcessGroup`): the ranks that share the weights.
        prefetch (`bool`, defaults to `True`): issue each block's all-gather when the block before it starts, so it
            overlaps that block's compute (FSDP2's `set_modules_to_forward_prefetch`).

    Returns:
        `model`, sharded in place; `unshard_weights` undoes it.
    """
    from torch.distributed.fsdp import fully_shard

    if getattr(model, _ATTR, None) is not None:
        return model
    mesh = _mesh(group)
    devices = {p.device.type for p in model.parameters()} - {"meta", "cpu"}
    if devices - {mesh.device_type}:  # FSDP2 would move them to the mesh's device, silently
        raise ValueError(
            f"{type(model).__name__} is on {', '.join(sorted(devices))}, but its ranks communicate over "
            f"{dist.get_backend(group)} ({mesh.device_type} tensors): use a process group of that device's backend "
            "(NCCL for CUDA), or load the model on the CPU and let shard_weights move each rank's shards."
        )
    requires_grad = {name: p.requires_grad for name, p in model.named_parameters()}
    model.requires_grad_(False)
    lists = repeated_blocks(model)
    units: list[nn.Module] = []
    for blocks in lists:
        for block in blocks:
            fully_shard(block, mesh=mesh, reshard_after_forward=True)
            register_cache_block_class(block)
        if prefetch:  # within a list only: its blocks run in order, while lists may run in any order (or not at all)
            for block, after in zip(blocks[:-1], blocks[1:]):
                block.set_modules_to_forward_prefetch([after])
        units += list(blocks)
    # The root unit holds the embeddings, norms and projections. reshard_after_forward=True, given explicitly: left to
    # its default, FSDP2 keeps the root's weights whole after forward (for training's backward), on every rank.
    fully_shard(model, mesh=mesh, reshard_after_forward=True)
    units.append(model)
    setattr(model, _ATTR, ShardedWeights(units, requires_grad, group))
    return model


def is_sharded(model: nn.Module) -> bool:
    """Whether `shard_weights` sharded `model` (and `unshard_weights` has not undone it)."""
    return getattr(model, _ATTR, None) is not None


def unshard_weights(model: nn.Module) -> nn.Module:
    """Undo `shard_weights`: every rank gets plain full parameters back, bit for bit, and the model its class.

    A collective of the ranks `model` is sharded over (each parameter is all-gathered once), in the same order on
    each. A model that is not sharded is left as it is.
    """
    sharded: ShardedWeights | None = getattr(model, _ATTR, None)
    if sharded is None:
        return model
    for unit in sharded.units:
        unit.reshard()  # every parameter back to its DTensor shard: a unit may hold its whole weights (prefetched)
    from torch.distributed.tensor import DTensor

    # Gathered in `named_modules` order, the same on every rank; a parameter shared by two modules (T5's tied
    # embeddings) is gathered once and set on both.
    full: dict[int, nn.Parameter] = {}
    for module in model.modules():
        for name, param in list(module._parameters.items()):
            if isinstance(param, DTensor):
                if id(param) not in full:
                    full[id(param)] = nn.Parameter(param.full_tensor(), requires_grad=False)
                module._parameters[name] = full[id(param)]
    for unit in reversed(sharded.units):
        forget_fully_shard(unit)
    for name, param in model.named_parameters():
        param.requires_grad_(sharded.requires_grad.get(name, True))
    delattr(model, _ATTR)
    return model


_NOT_TRACED = (
    "a transformer with sharded weights (shard_weights=True) cannot be traced whole by torch.compile(fullgraph=True): "
    "FSDP2 gathers each block's weights in module hooks that Dynamo does not trace. Compile its blocks instead, "
    "before parallelize: `transformer.compile_repeated_blocks(fullgraph=True)`, then "
    "`diffusers_usp.parallelize(pipe, shard_weights=True)`."
)


def text_encoders(pipe) -> list[nn.Module]:
    """A pipeline's text encoders (`text_encoder`, `text_encoder_2`, ...): every rank runs them once per prompt."""
    components = getattr(pipe, "components", None) or {}
    return [m for name, m in components.items() if name.startswith("text_encoder") and isinstance(m, nn.Module)]


def apply_weight_sharding(pipe_or_transformer, models: list[nn.Module]) -> None:
    """`parallelize(..., shard_weights=True)`'s step: shard each parallelized model of `models` over its sequence
    group (ring x Ulysses), and a pipeline's text encoders over the first one's.

    The sequence group, not all ranks: with `cfg_degree=2` in a pipeline that calls the transformer twice per step,
    each call runs on one CFG group only (and a step with guidance off on one group only), so a gather over all ranks
    would wait for ranks that never join. Within a sequence group every rank runs every forward. Each CFG group thus
    holds one sharded copy: the weights divide by `ring_degree x Ulysses degree`, not by the world size.
    """

    groups = []
    for model in models:
        state = getattr(model, "_usp_sequence", None)
        if state is None:  # a ControlNet without a plan runs whole on every rank, and keeps whole weights
            continue
        registry = getattr(model, "_diffusers_hook", None)
        if registry is not None and registry.get_hook(CUDA_GRAPH_HOOK) is not None:
            raise ValueError(NO_GRAPHS.format(name=type(model).__name__))
        group = state.group.group if state.group.group is not None else dist.group.WORLD
        if state.group.size > 1:
            shard_weights(model, group)
            HookRegistry.check_if_exists_or_initialize(model).register_hook(NotTracedHook(), _HOOK)
            keep_outermost(model)  # with cfg_degree=2
            groups.append(group)
        elif dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            warnings.warn(
                f"shard_weights=True: {type(model).__name__}'s sequence is not split (one rank per sequence, e.g. "
                "cfg_degree=2 on 2 ranks), so there are no ranks to shard its weights over and they stay whole.",
                stacklevel=3,
            )
    for encoder in text_encoders(pipe_or_transformer) if groups else []:
        shard_weights(encoder, groups[0])


def remove_weight_sharding(pipe_or_transformer, models: list[nn.Module]) -> None:
    """Undo `apply_weight_sharding` on `models` and a pipeline's text encoders (each, where it sharded them)."""
    for model in [*models, *text_encoders(pipe_or_transformer)]:
        registry = getattr(model, "_diffusers_hook", None)
        if registry is not None and registry.get_hook(_HOOK) is not None:
            registry.remove_hook(_HOOK, recurse=False)
        unshard_weights(model)


class NotTracedHook(ModelHook):
    """Makes a whole-model `torch.compile(fullgraph=True)` of a sharded transformer fail with the fix, rather than
    with Dynamo's "Attempted to call function marked as skipped" at the first block (FSDP2's hooks are not traced).
    `recursive=False`: without `fullgraph`, Dynamo skips this frame only, not the model's forward inside it."""

    @torch.compiler.disable(recursive=False, reason=_NOT_TRACED)
    def new_forward(self, module, *args, **kwargs):
        return self.fn_ref.original_forward(*args, **kwargs)


NO_GRAPHS = (
    "{name}: CUDA graphs (apply_cuda_graphs) and shard_weights=True do not compose: FSDP2 frees each block's gathered "
    "weights by resizing their storage after the block runs, which a captured graph cannot replay. Use one of them "
    "(for a model that fits one device, leave shard_weights off), or call diffusers_usp.remove_parallelism() first."
)
