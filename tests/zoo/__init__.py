"""Tiny configs and inputs for diffusers transformer classes, one module per family, and the discovery of every
transformer class the installed diffusers exports."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import torch

from .base import Case, seeded

CASES: dict[str, Case] = {}
UNSUPPORTED: dict[str, str] = {}
for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        _family = importlib.import_module(f"{__name__}.{_module.name}")
        CASES.update(_family.CASES)
        UNSUPPORTED.update(_family.UNSUPPORTED)
NO_PLAN_YET = "no sequence plan yet"


def discover() -> list[str]:
    """Every `ModelMixin` class that `diffusers.models.transformers` exports."""
    import diffusers.models.transformers as transformers
    from diffusers.models.modeling_utils import ModelMixin

    return sorted(
        name for name in dir(transformers)
        if inspect.isclass(cls := getattr(transformers, name)) and issubclass(cls, ModelMixin)
    )  # fmt: skip


def build(name: str, seed: int = 0) -> tuple[torch.nn.Module, dict]:
    """The tiny model of `name` (weights from `seed`) and its inputs (from `seed + 1`)."""
    case = CASES[name]
    model = case.model(name, seed)
    return model, case.inputs(model, torch.Generator().manual_seed(seed + 1))


__all__ = ["CASES", "UNSUPPORTED", "NO_PLAN_YET", "Case", "build", "discover", "seeded"]
