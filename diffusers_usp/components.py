"""Which models of a pipeline `parallelize` works on: its transformer(s), which must have a plan, and its
ControlNet(s), which run whole on every rank where they have none."""

from __future__ import annotations

import torch

# The name of `apply_cuda_graphs`' hook: here, so that weight sharding can refuse a captured model without importing
# graphs.py (which imports weights.py to refuse the reverse).
CUDA_GRAPH_HOOK = "usp_cuda_graph"


def models_of(obj) -> list[tuple[torch.nn.Module, bool]]:
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
