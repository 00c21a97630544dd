"""`parallelize`, the one call that installs USP processors and sequence sharding on a pipeline or transformer, and
`remove_parallelism`, its inverse."""

from __future__ import annotations

import warnings
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist
from diffusers.hooks import HookRegistry, ModelHook

from .caches import apply_cache_sync, remove_cache_sync
from .cfg import apply_cfg_parallel, cfg_axis, remove_cfg_parallel
from .compat import group_timeout, hook_registry, native_parallelism
from .components import models_of
from .graphs import remove_cuda_graphs
from .groups import ParallelDims, group_ranks, resolve_group, reused
from .plans import PLANS, SequencePlan, plan_for
from .processor import USPProcessor
from .role import AttentionRole
from .sequence import SequenceState
from .sharding import apply_sequence_sharding, remove_sequence_sharding
from .vae import apply_vae_split, is_autoencoder, remove_vae_split, vae_components
from .weights import apply_weight_sharding, remove_weight_sharding

T = TypeVar("T")

# How long a rank waits in a USP collective for the others. A rank that fails mid-forward (out of memory, say) never
# enters the next collective; this bounds how long the others wait before they raise too. The longest legitimate
# wait is one rank being a layer or a first-call compile behind the others, far below this.
DEFAULT_TIMEOUT = timedelta(minutes=5)
_HOOK = "usp_parallelism"


def parallelize(
    pipe_or_transformer: T,
    *,
    ring_degree: int = 1,
    cfg_degree: int = 1,
    group: dist.ProcessGroup | None = None,
    timeout: timedelta | None = DEFAULT_TIMEOUT,
    check_inputs: bool = True,
    shard_weights: bool = False,
    vae: bool = True,
) -> T:
    """Run a diffusers transformer with Ulysses sequence parallelism across the ranks of `group`.

    Wraps every attention module's processor in a `USPProcessor` and registers hooks that split the sequence after the
    transformer's embeddings and gather it after its output projection, following the model's `SequencePlan`. Every
    rank must be given the same inputs (seeded generators, same prompt); every rank returns the full output.

    Args:
        pipe_or_transformer (`DiffusionPipeline` or `ModelMixin`):
            A pipeline (its `transformer`, `transformer_2`, ... components are parallelized, and its `controlnet`
            where a plan exists; any other ControlNet runs whole on every rank, with a warning; its `vae`, see `vae`),
            a transformer, or an autoencoder (its decode and encode split by rows, see docs/vaes.md).
        ring_degree (`int`, defaults to 1):
            The number of Ulysses groups that split one sequence as a ring: the ranks sharing a sequence form
            `ring_degree` groups of `world // ring_degree` consecutive ranks each. Every attention then runs Ulysses
            inside each group and passes key/value blocks between groups, point to point, overlapped with attention.
            Use it across machines (`ring_degree` = the number of machines keeps the all-to-alls inside each) or for
            more ranks than heads. It must divide the number of ranks (with `cfg_degree=2`, the ranks of one CFG
            group). docs/launching.md ("Several machines: ring attention") has the layout and limits.
        cfg_degree (`int`, defaults to 1):
            1, or 2 for CFG parallel: the ranks split into 2 groups (consecutive ranks together), each running
            Ulysses over its own ranks, and the conditional and unconditional branches of classifier-free guidance
            run on different groups, whether the pipeline batches them (one call on `cat([uncond, cond])`) or calls
            the transformer twice per step (`cache_context("cond")`, then `("uncond")`). It must divide the number
            of ranks. docs/launching.md ("CFG parallel") has the guarantees and limits.
        group (`torch.distributed.ProcessGroup`, *optional*):
            The ranks that share one sequence (with `cfg_degree=2`, the ranks that are split into the 2 groups).
            Defaults to a new group of all ranks of the default process group (which `accelerate.PartialState()` or
            `torch.distributed.init_process_group()` creates); every rank must then call `parallelize` in the same
            order. With one process this is an exact no-op.
        timeout (`datetime.timedelta`, *optional*, defaults to 5 minutes):
            The timeout of the groups created when `group` is not given: if one rank fails mid-forward, the others
            raise after waiting this long instead of hanging. `None` uses the default group's timeout. (With
            `cfg_degree=2` and a `group`, the groups created inside it take its timeout.)
        check_inputs (`bool`, defaults to `True`):
            Compare the inputs across ranks on every forward and raise on every rank, naming them, if they differ: the
            first forward with one all-reduce, later ones through checksums carried by the output all-gather, at most
            one forward late (with `cfg_degree=2`, also across the two groups on the first call).
        shard_weights (`bool`, defaults to `False`):
            Also shard the weights of the transformers (and of a pipeline's text encoders) over the ranks that share
            one sequence, with FSDP2: each rank stores 1/P of them, and each block's weights are gathered just before
            it runs (prefetched one block ahead) and freed after. For models that do not fit one device; inference
            only. docs/launching.md ("When to shard the weights") has the memory per model and the limits.
        vae (`bool`, defaults to `True`):
            Also split the pipeline's VAE (its decode and encode) by rows across all ranks of the group, exactly
            (docs/vaes.md lists the classes; any other runs whole on every rank, with a warning). `False` leaves it
            whole. A bare autoencoder given as `pipe_or_transformer` is split whatever this says.

    Returns:
        Its argument, parallelized in place. `remove_parallelism` undoes it.
    """
    if group is not None and timeout is not DEFAULT_TIMEOUT:
        raise ValueError("Pass `group` or `timeout`, not both: a given group keeps the timeout it was created with.")
    sequence = resolve_group(group)  # first: it names the fix when a launcher started processes without a group
    dims = ParallelDims(
        group_ranks(group), cfg_degree, ring_degree, timeout if group is None and timeout else group_timeout(group)
    )
    cfg = ring = ulysses = None
    if dims.cfg > 1 or dims.ring > 1:  # builds the mesh: collective, like new_group below
        sequence = dims.axis("sequence")
        cfg = dims.axis("cfg") if dims.cfg > 1 else None
        if dims.ring > 1:
            ring, ulysses = dims.axis("ring"), dims.axis("ulysses")
    elif group is None and timeout is not None and dist.is_available() and dist.is_initialized():
        # collective (every rank calls parallelize in the same order), and made once per timeout
        group = reused(("world", timeout), lambda: dist.new_group(timeout=timeout))
        sequence = resolve_group(group)
    if is_autoencoder(pipe_or_transformer):  # split by rows over all ranks of the group, whatever `vae` says
        apply_vae_split(pipe_or_transformer, resolve_group(group))
        return pipe_or_transformer
    for transformer, required in models_of(pipe_or_transformer):
        if getattr(transformer, "_usp_sequence", None) is not None:  # already parallelized
            degree = 2 if cfg_axis(transformer) is not None else 1
            ring_now = transformer._usp_sequence.ring.size if transformer._usp_sequence.ring is not None else 1
            if (degree, ring_now) != (dims.cfg, dims.ring):
                raise ValueError(
                    f"{type(transformer).__name__} is already parallelized with cfg_degree={degree} and "
                    f"ring_degree={ring_now}: call diffusers_usp.remove_parallelism() first to parallelize it with "
                    f"cfg_degree={dims.cfg} and ring_degree={dims.ring}."
                )
            continue
        plan = plan_for(transformer)
        if plan is None and not required:
            # Correct as it is: its residuals reach the transformer whole, and the transformer's plan splits them.
            warnings.warn(
                f"diffusers_usp has no sequence plan for {type(transformer).__name__}: it runs whole on every rank.",
                stacklevel=2,
            )
            continue
        if plan is None:
            raise ValueError(
                f"diffusers_usp has no sequence plan for {type(transformer).__name__} (plans exist for "
                f"{', '.join(sorted(PLANS))}). `transformer.set_attn_processor(USPProcessor())` still runs it exactly, "
                "splitting attention heads across ranks but not the sequence."
            )
        if native_parallelism(transformer) is not None:
            raise ValueError(
                f"{type(transformer).__name__} already has diffusers' own context parallelism enabled "
                "(enable_parallelism). Use one or the other: load the model afresh before parallelize()."
            )
        state = SequenceState(
            sequence,
            replicated_front=plan.replicated_front,
            check_inputs=check_inputs,
            ring=ring,
            ulysses=ulysses,
            several=bool(plan.two_sequences),
        )
        processors = _install_processors(transformer, plan, state)
        apply_sequence_sharding(transformer, plan, state)
        # Registered after the split hooks, so it runs first: a replaced processor is refused before any collective.
        HookRegistry.check_if_exists_or_initialize(transformer).register_hook(
            ParallelismHook(plan, state, processors), _HOOK
        )
        apply_cache_sync(transformer, sequence, dims.ranks, dims.timeout)  # runs before the hooks above: refuses first
        if cfg is not None:  # outermost: it decides which CFG group runs a call before any hook above splits it
            apply_cfg_parallel(transformer, cfg, plan, check_inputs, warn=required)
        transformer._usp_sequence = state
    if shard_weights:  # after the hooks above: FSDP2's gather runs around them, in the module's __call__
        apply_weight_sharding(pipe_or_transformer, [m for m, _ in models_of(pipe_or_transformer)])
    for autoencoder in vae_components(pipe_or_transformer) if vae else []:
        apply_vae_split(autoencoder, resolve_group(group))  # all ranks: the CFG halves hold the same latents
    return pipe_or_transformer


def remove_parallelism(pipe_or_transformer: T) -> T:
    """Undo `parallelize`: restore every attention module's original processor and remove the split and gather hooks.

    The models then compute exactly what they computed before `parallelize` (bit for bit), and `parallelize` may be
    called on them again. CUDA graphs captured by `apply_cuda_graphs` hold the parallel step, so they are released
    too. A model that was never parallelized is left as it is.

    Args:
        pipe_or_transformer (`DiffusionPipeline` or `ModelMixin`):
            What was given to `parallelize`: a pipeline (its transformers, ControlNets and VAE) or one model.

    Returns:
        Its argument.
    """
    for autoencoder in vae_components(pipe_or_transformer):
        remove_vae_split(autoencoder)
    if is_autoencoder(pipe_or_transformer):
        return pipe_or_transformer
    remove_weight_sharding(pipe_or_transformer, [m for m, _ in models_of(pipe_or_transformer)])
    for model, _ in models_of(pipe_or_transformer):
        registry = hook_registry(model)
        hook = registry.get_hook(_HOOK) if registry is not None else None
        if hook is None:
            continue
        remove_cuda_graphs(model)
        remove_cfg_parallel(model)
        remove_cache_sync(model)
        registry.remove_hook(_HOOK, recurse=False)
        for module, original, usp in hook.processors:
            if module.processor is usp:  # a processor set since then by the user stays
                _set_processor(module, original)
        remove_sequence_sharding(model, hook.plan)
        del model._usp_sequence
    return pipe_or_transformer


def _install_processors(
    transformer: torch.nn.Module, plan: SequencePlan, state: SequenceState
) -> list[tuple[torch.nn.Module, object, USPProcessor]]:
    """Wrap the processor of every attention module of `transformer` in a `USPProcessor` with the module's role, and
    return `(module, original processor, USPProcessor)` for each."""
    # Every module with a processor, found by walking the tree: not every transformer class has diffusers'
    # `AttentionMixin` (`attn_processors` / `set_attn_processor`).
    # `processor` without `set_processor` too (Mochi's `MochiAttention`): skipped, it would attend its own tokens only.
    modules = [
        (path, m) for path, m in transformer.named_modules()
        if hasattr(m, "processor") and (hasattr(m, "set_processor") or callable(m.processor))
    ]  # fmt: skip
    # A cross module beside a sharded one in the same block is a cross-attention inside the sharded blocks (Wan's,
    # PixArt's, the U-Net blocks' `attn2`): its queries are sharded. Called without its context, diffusers' processors
    # then self-attend those queries' tokens, which must go through the all-to-all. The cross modules of a text
    # refiner or of a model split along its batch (TransformerTemporalModel) have no sharded sibling.
    sharded_blocks = {path.rpartition(".")[0] for path, _ in modules if not plan.is_cross(path)}
    installed = []
    for path, module in modules:
        original = module.processor
        inner = original.processor if isinstance(original, USPProcessor) else original
        if inner is None:  # a bare USPProcessor() set before: the module's own default processor
            inner = original._default_for(module)
        cross = plan.is_cross(path)
        role = AttentionRole(
            mode="cross" if cross else "sharded",
            sequence=state,
            joint=plan.is_joint(path),
            sharded_queries=cross and path.rpartition(".")[0] in sharded_blocks,
            two_sequences=plan.is_two_sequences(path) and not cross,
            kv_prefix=not cross and plan.has_kv_prefix(path),
            model=type(transformer).__name__,
            path=path,
        )
        usp = USPProcessor(inner, role=role)
        _set_processor(module, usp)
        installed.append((module, original, usp))
    return installed


class ParallelismHook(ModelHook):
    """Holds what `remove_parallelism` needs to undo `parallelize` on one model, and refuses a forward whose attention
    processors were replaced since: a processor set afterwards (a PAG pipeline's, `fuse_qkv_projections`'s, an
    IP-Adapter loaded later) would attend this rank's tokens only and return a plausible, wrong output."""

    def __init__(self, plan: SequencePlan, state: SequenceState, processors: list) -> None:
        super().__init__()
        self.plan = plan
        self.state = state
        self.processors = processors

    def pre_forward(self, module, *args, **kwargs):
        if self.state.group.size > 1:
            for attn, _, usp in self.processors:
                if attn.processor is not usp:
                    raise RuntimeError(
                        f"{type(module).__name__} `{usp.role.path}`: its attention processor was replaced by "
                        f"{type(attn.processor).__name__} after diffusers_usp.parallelize(), and would attend only "
                        "this rank's tokens. Set processors (IP-Adapters, PAG, fused projections) before "
                        "parallelize(), or call diffusers_usp.remove_parallelism() first and parallelize() again after."
                    )
        return args, kwargs


def _set_processor(module: torch.nn.Module, processor) -> None:
    """`module.set_processor(processor)`, or the attribute itself for attention classes without that method."""
    if hasattr(module, "set_processor"):
        module.set_processor(processor)
    else:
        module.processor = processor
