"""A coverage case: a tiny config of one transformer class and the inputs of one forward."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Case:
    """A tiny random-weight instance of one diffusers transformer class and one forward's inputs.

    Args:
        config (`dict`): keyword arguments of the class's constructor.
        inputs (`Callable[[torch.nn.Module, torch.Generator], dict]`): keyword arguments of one forward, drawn from
            the generator only, so every rank and the single-process reference get the same ones.
        worlds (`tuple[int, ...]`): world sizes whose parity is proven (the token counts must divide by them).
        limits (`str`): inputs or modes of the class that `parallelize` refuses with an error naming them (shown in
            `docs/models.md` beside the class); empty when every mode the forward has is supported.
    """

    config: dict
    inputs: Callable[[torch.nn.Module, torch.Generator], dict]
    worlds: tuple[int, ...] = (2, 3, 4)
    limits: str = ""


def randn(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=g)


def timestep(g: torch.Generator, batch: int = 1, scale: float = 1000.0) -> torch.Tensor:
    return torch.rand(batch, generator=g) * scale
