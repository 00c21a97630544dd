"""Replay whole transformer steps from CUDA graphs, collectives included.

Below about 2k tokens per GPU an eager step is bound by kernel launches on the host: Flux 1024² on 4 GPUs holds 1152
tokens per rank and takes as long eagerly as on 2. A CUDA graph launches the whole step at once. The NCCL
collectives are captured with it (on NCCL's own streams), so the parallel step replays as one unit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.hooks import HookRegistry, ModelHook

from .cfg import keep_outermost
from .compat import hook_registry
from .components import CUDA_GRAPH_HOOK, models_of
from .weights import NO_GRAPHS, is_sharded

_HOOK = CUDA_GRAPH_HOOK


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    inputs: dict[int | str, torch.Tensor]  # static tensors the graph reads, by argument; new inputs are copied in
    output: object  # static outputs the graph writes


def _tensors(args: tuple, kwargs: dict) -> dict[int | str, torch.Tensor]:
    """The tensor arguments of one call, keyed by position (positional) or name (keyword).

    Keyed, not listed in call order: `_signature` sorts the keywords, so calls that pass the same keywords in another
    order share one graph, and a list would copy each new tensor into another argument's static buffer.
    """
    found: dict[int | str, torch.Tensor] = {i: x for i, x in enumerate(args) if isinstance(x, torch.Tensor)}
    found.update((name, x) for name, x in kwargs.items() if isinstance(x, torch.Tensor))
    return found


def _copy_inputs(static: dict[int | str, torch.Tensor], args: tuple, kwargs: dict) -> None:
    """Copy one call's tensors into the captured graph's static inputs, argument by argument."""
    for key, new in _tensors(args, kwargs).items():
        static[key].copy_(new)


def _signature(args: tuple, kwargs: dict):
    """What a captured graph is specialised to: tensor shapes, dtypes and devices, and every other argument's value."""

    def describe(x):
        if isinstance(x, torch.Tensor):
            return ("tensor", tuple(x.shape), x.dtype, x.device)
        if isinstance(x, (list, tuple, dict)) and any(
            isinstance(v, torch.Tensor) for v in (x.values() if isinstance(x, dict) else x)
        ):
            raise TypeError("tensors nested in containers")
        return x

    return tuple(describe(a) for a in args), tuple(sorted((k, describe(v)) for k, v in kwargs.items()))


def _clone(output):
    if isinstance(output, torch.Tensor):
        return output.clone()
    if isinstance(output, (list, tuple)):
        return type(output)(_clone(x) for x in output)
    if hasattr(output, "to_tuple"):  # diffusers' BaseOutput
        return type(output)(*(_clone(x) for x in output.to_tuple()))
    return output


class CUDAGraphHook(ModelHook):
    """Captures a module's forward in a CUDA graph on the first call with each input signature; replays it after.

    Replays copy the new input tensors into the captured ones and return a copy of the captured outputs (a pipeline
    may call the transformer twice per step, for CFG, before using the first result). Calls whose arguments hold
    tensors inside containers, or that run while another capture is under way, run eagerly.
    """

    def __init__(self, warmup: int = 2) -> None:
        super().__init__()
        self.warmup = warmup
        self.graphs: dict = {}
        self.pool = None

    def new_forward(self, module, *args, **kwargs):
        forward = self.fn_ref.original_forward
        if torch.cuda.is_current_stream_capturing():
            return forward(*args, **kwargs)
        try:
            key = _signature(args, kwargs)
            hash(key)
        except TypeError:
            return forward(*args, **kwargs)
        captured = self.graphs.get(key)
        if captured is None:
            captured = self.graphs[key] = self._capture(forward, args, kwargs)
        _copy_inputs(captured.inputs, args, kwargs)
        captured.graph.replay()
        return _clone(captured.output)

    def _capture(self, forward, args, kwargs) -> _Captured:
        # The graph reads its own copies: aliasing the caller's tensors would overwrite them on the next replay.
        args = tuple(x.clone() if isinstance(x, torch.Tensor) else x for x in args)
        kwargs = {k: x.clone() if isinstance(x, torch.Tensor) else x for k, x in kwargs.items()}
        # Warm up on a side stream, as capture requires: lazy initialisation (cuBLAS workspaces, NCCL communicators,
        # the one-time input check with its host sync) must happen before capture, not inside it.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                forward(*args, **kwargs)
        torch.cuda.current_stream().wait_stream(side)
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()  # one memory pool for every signature of this module
        graph = torch.cuda.CUDAGraph()
        # thread_local: NCCL's watchdog thread queries CUDA while this thread captures; "global" would fail it.
        with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
            output = forward(*args, **kwargs)
        return _Captured(graph, _tensors(args, kwargs), output)


def apply_cuda_graphs(pipe_or_transformer, warmup: int = 2):
    """Replay every transformer step of a pipeline (or of one transformer) from CUDA graphs.

    Call it after `parallelize`, so the split, the collectives and the gather are inside the graph. The first call
    with each new input shape runs `warmup` eager steps and captures one; later calls replay it. Inputs are copied
    into the captured tensors on every call, so the same pipeline code works unchanged.

    Args:
        pipe_or_transformer (`DiffusionPipeline` or `ModelMixin`): on CUDA.
        warmup (`int`, defaults to 2): eager steps before each capture.

    Returns:
        Its argument.
    """
    # The transformers only: a ControlNet runs eagerly (its residual lists would need their own static outputs).
    for transformer in (model for model, required in models_of(pipe_or_transformer) if required):
        if is_sharded(transformer):  # checked first, the same on every rank: each raises
            raise ValueError(NO_GRAPHS.format(name=type(transformer).__name__))
        if next(transformer.parameters()).device.type != "cuda":
            raise ValueError(f"CUDA graphs need the model on a CUDA device; {type(transformer).__name__} is not.")
        registry = HookRegistry.check_if_exists_or_initialize(transformer)
        if registry.get_hook(_HOOK) is None:
            registry.register_hook(CUDAGraphHook(warmup), _HOOK)
            keep_outermost(transformer)  # with cfg_degree=2: each CFG group captures the calls it computes
    return pipe_or_transformer


def remove_cuda_graphs(pipe_or_transformer):
    """Undo `apply_cuda_graphs`, releasing the captured graphs."""
    for transformer in (model for model, required in models_of(pipe_or_transformer) if required):
        registry = hook_registry(transformer)
        if registry is not None:
            registry.remove_hook(_HOOK, recurse=False)
    return pipe_or_transformer
