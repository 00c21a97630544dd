"""Sequence plans, one module per model family. Adding a model means adding an entry to its family module's `PLANS`
(a new family module in this folder is picked up by itself)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable

import torch

from .base import (
    LogBaseOfLength,
    Replicated,
    ReplicatedSubset,
    SequencePlan,
    SplitEach,
    SplitOrReplicate,
    SplitPerSample,
    SplitTail,
    SplitUnlessBroadcast,
    TokenCount,
    UnsupportedConfig,
)

# Class name -> plan, or a factory: no argument (keeps diffusers model imports lazy) or the transformer (a plan that
# depends on its config). A factory raises `UnsupportedConfig` naming the config value it cannot cover, or returns
# `None` where the model may run whole instead (a ControlNet).
PLANS: dict[str, SequencePlan | Callable[..., SequencePlan | None]] = {}
for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        PLANS.update(importlib.import_module(f"{__name__}.{_module.name}").PLANS)


def plan_for(transformer: torch.nn.Module) -> SequencePlan | None:
    """The plan registered for `transformer`'s exact class, if any (a subclass may change its forward).

    Raises:
        UnsupportedConfig: the class has a plan, but not for this instance's config; the message says why.
    """
    plan = PLANS.get(type(transformer).__name__)
    if not callable(plan):
        return plan
    return plan(transformer) if inspect.signature(plan).parameters else plan()


__all__ = [
    "LogBaseOfLength",
    "PLANS",
    "Replicated",
    "ReplicatedSubset",
    "SequencePlan",
    "SplitEach",
    "SplitOrReplicate",
    "SplitPerSample",
    "SplitTail",
    "SplitUnlessBroadcast",
    "TokenCount",
    "UnsupportedConfig",
    "plan_for",
]
