"""`parallelize`: the one call that installs USP processors and sequence sharding on a pipeline or transformer."""

from __future__ import annotations

import warnings
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

from .plans import PLANS, plan_for
from .processor import USPProcessor
from .sharding import SequenceState, apply_sequence_sharding
from .state import ulysses_group

T = TypeVar("T")

# How long a rank waits in a USP collective for the others. A rank that fails mid-forward (out of memory, say) never
# enters the next collective; this bounds how long the others wait before they raise too. The longest legitimate
# wait is one rank being a layer or a first-call compile behind the others, far below this.
DEFAULT_TIMEOUT = timedelta(minutes=5)


def _models(obj) -> list[tuple[torch.nn.Module, bool]]:
    """`(model, required)` for each model to parallelize: a pipeline's transformer(s) (`transformer`,
    `transformer_2`, ...), which must have a plan, and its ControlNet(s) (`controlnet`, each net of a multi-ControlNet),
    which run whole on every rank where they have none; or `obj` itself, required."""
    if isinstance(obj, torch.nn.Module):
        return [(obj, True)]
    components = getattr(obj, "components", None)
    if not isinstance(components, dict):
        raise TypeError(f"parallelize() takes a diffusers pipeline or transformer, not {type(obj).__name__}.")
    modules = {name: m for name, m in components.items() if isinstance(m, torch.nn.Module)}
    found = [(m, True) for name, m in modules.items() if name.startswith("transformer")]
    if not found:
        raise ValueError(f"{type(obj).__name__} has no transformer component to parallelize.")
    for name, m in modules.items():
        if name.startswith("controlnet"):
            found += [(net, False) for net in getattr(m, "nets", [m])]  # Flux/SD3 multi-ControlNets hold `nets`
    return found


def parallelize(
    pipe_or_transformer: T,
    *,
    group: dist.ProcessGroup | None = None,
    timeout: timedelta | None = DEFAULT_TIMEOUT,
    check_inputs: bool = True,
) -> T:
    """Run a diffusers transformer with Ulysses sequence parallelism across the ranks of `group`.

    Wraps every attention module's processor in a `USPProcessor` and registers hooks that split the sequence after the
    transformer's embeddings and gather it after its output projection, following the model's `SequencePlan`. Every
    rank must be given the same inputs (seeded generators, same prompt); every rank returns the full output.

    Args:
        pipe_or_transformer (`DiffusionPipeline` or `ModelMixin`):
            A pipeline (its `transformer`, `transformer_2`, ... components are parallelized, and its `controlnet`
            where a plan exists; any other ControlNet runs whole on every rank, with a warning) or a transformer.
        group (`torch.distributed.ProcessGroup`, *optional*):
            The ranks that share one sequence. Defaults to a new group of all ranks of the default process group
            (which `accelerate.PartialState()` or `torch.distributed.init_process_group()` creates); every rank must
            then call `parallelize` in the same order. With one process this is an exact no-op.
        timeout (`datetime.timedelta`, *optional*, defaults to 5 minutes):
            The timeout of the group created when `group` is not given: if one rank fails mid-forward, the others
            raise after waiting this long instead of hanging. `None` uses the default group and its timeout.
        check_inputs (`bool`, defaults to `True`):
            On the first forward, all-reduce one checksum of the inputs and raise on every rank if they differ.

    Returns:
        Its argument, parallelized in place.
    """
    if group is not None and timeout is not DEFAULT_TIMEOUT:
        raise ValueError("Pass `group` or `timeout`, not both: a given group keeps the timeout it was created with.")
    if group is None and timeout is not None and dist.is_available() and dist.is_initialized():
        group = dist.new_group(timeout=timeout)  # collective: every rank calls parallelize in the same order
    ulysses = ulysses_group(group)
    for transformer, required in _models(pipe_or_transformer):
        if getattr(transformer, "_usp_sequence", None) is not None:
            continue  # already parallelized
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
        if getattr(transformer, "_parallel_config", None) is not None:
            raise ValueError(
                f"{type(transformer).__name__} already has diffusers' own context parallelism enabled "
                "(enable_parallelism). Use one or the other: load the model afresh before parallelize()."
            )
        state = SequenceState(ulysses, replicated_front=plan.replicated_front, check_inputs=check_inputs)
        # Every module with a processor, found by walking the tree: not every transformer class has diffusers'
        # `AttentionMixin` (`attn_processors` / `set_attn_processor`).
        for path, module in transformer.named_modules():
            if not (hasattr(module, "set_processor") and hasattr(module, "processor")):
                continue
            usp = USPProcessor(module.processor, group=group)
            usp._group = ulysses
            usp._sequence = state
            usp._local = plan.is_local(path)
            usp._joint = plan.is_joint(path)
            module.set_processor(usp)
        apply_sequence_sharding(transformer, plan, state)
        transformer._usp_sequence = state
    return pipe_or_transformer
