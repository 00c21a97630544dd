"""A coverage case: a tiny config of one transformer class and the inputs of one forward, and the one seeded
builder every test model goes through."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch

T = TypeVar("T")


def seeded(seed: int, build: Callable[[], T]) -> T:
    """`build()` with the CPU RNG seeded, the global RNG state restored afterwards: the same weights on every rank and
    in the test's single-process reference, whatever each process drew before."""
    with torch.random.fork_rng(devices=[]):  # devices=[]: do not touch (or initialise) CUDA RNGs
        torch.manual_seed(seed)
        return build()


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
        tiny (`Callable`, *optional*): a `diffusers_usp.tiny` builder (`seed=`, config overrides) whose config this
            case uses, so that it is written once; `config` then holds only overrides.
        linear (`bool`): its sharded self-attention is linear attention (Sana): one all-reduce of the key-value sums
            per call over the whole sequence group, and no ring form, so a ring layout makes no ring shifts.
    """

    config: dict
    inputs: Callable[[torch.nn.Module, torch.Generator], dict]
    worlds: tuple[int, ...] = (2, 3, 4)
    limits: str = ""
    tiny: Callable[..., torch.nn.Module] | None = None
    linear: bool = False

    def model(self, cls_name: str, seed: int = 0) -> torch.nn.Module:
        """The case's `diffusers.<cls_name>` in eval mode, weights drawn from `seed`."""
        if self.tiny is not None:
            return self.tiny(seed=seed, **self.config)
        import diffusers

        return seeded(seed, lambda: getattr(diffusers, cls_name)(**self.config)).eval()


def randn(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=g)


def timestep(g: torch.Generator, batch: int = 1, scale: float = 1000.0) -> torch.Tensor:
    return torch.rand(batch, generator=g) * scale
