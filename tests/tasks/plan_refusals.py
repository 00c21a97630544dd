"""Rank tasks of `tests/test_plan_refusals.py`: modes of the plan-language classes that `parallelize` refuses."""

from __future__ import annotations

import torch
import zoo

from diffusers_usp import parallelize


def flash_window_on_a_ring(ring_degree: int) -> str:
    """How this rank's forward of the ACE-Step case ended under `parallelize(model, ring_degree=...)` with a flash
    backend named on its processors: ACE-Step then passes its sliding window as `attention_kwargs` instead of a mask,
    which a ring's own kernels would drop. The backend is set, not run: it refuses before any kernel call."""
    model, inputs = zoo.build("AceStepTransformer1DModel")
    parallelize(model, ring_degree=ring_degree)
    for module in model.modules():
        if hasattr(module, "processor") and hasattr(module, "sliding_window"):
            module.processor._attention_backend = "flash"  # forwarded to the wrapped ACE-Step processor
    try:
        with torch.no_grad():
            model(**inputs, return_dict=False)
    except NotImplementedError as err:
        return f"{type(err).__name__}: {err}"
    return "no error"
