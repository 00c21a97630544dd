"""Sequence plans, one module per model family. Adding a model means adding an entry to its family module's `PLANS`
(a new family module in this folder is picked up by itself)."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable

import torch

from .base import SequencePlan, SplitOrReplicate

# Class name -> plan, or a zero-argument factory (keeps diffusers model imports lazy).
PLANS: dict[str, SequencePlan | Callable[[], SequencePlan]] = {}
for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        PLANS.update(importlib.import_module(f"{__name__}.{_module.name}").PLANS)


def plan_for(transformer: torch.nn.Module) -> SequencePlan | None:
    """The plan registered for `transformer`'s exact class, if any (a subclass may change its forward)."""
    plan = PLANS.get(type(transformer).__name__)
    return plan() if callable(plan) else plan


__all__ = ["PLANS", "SequencePlan", "SplitOrReplicate", "plan_for"]
