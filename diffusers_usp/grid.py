"""Convs over a token grid whose tokens are split in whole rows (or frames): the halo exchange before each.

Sana's Mix-FFN reshapes the tokens of an image to `[B, C, H, W]` and runs a 3x3 depthwise conv; Sana-Video's
reshapes each frame the same way and then runs a temporal conv, kernel 3, across the frames. A conv mixes
neighbouring rows, so these models split their tokens along the grid's FIRST axis (the plan specs in
`plans/grid_specs.py`: `GridInput`, `GridTokens`, `GridTokensEach`, `GridCount`). `SequencePlan.halo_convs` names
the conv modules over the split axis: before each runs, it exchanges a halo of rows with its neighbour ranks
(`halo.conv_rows`, the VAE split's exchange), so it returns exactly this rank's rows.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

import torch
from diffusers.hooks import HookRegistry, ModelHook

from .halo import conv_rows

if TYPE_CHECKING:
    from .sequence import SequenceState

_HALO_HOOK = "usp_halo_conv"


class HaloConvHook(ModelHook):
    """Runs a conv over this rank's rows of the split axis (dim -2 of its input) as over the whole grid: a halo of
    rows from each neighbour first, the conv's own padding on the edge ranks only."""

    def __init__(self, state: SequenceState) -> None:
        super().__init__()
        self.state = state

    def new_forward(self, module, x):
        if self.state.group.size == 1:
            return self.fn_ref.original_forward(x)
        return conv_rows(module, x, module.weight, module.bias, (0, 0), self.state.group)


def _halo_modules(transformer: torch.nn.Module, patterns: tuple[str, ...]) -> list[torch.nn.Module]:
    found = [m for path, m in transformer.named_modules() if any(fnmatchcase(path, p) for p in patterns)]
    if patterns and not found:
        raise ValueError(f"Sequence plan names halo convs {patterns}, but {type(transformer).__name__} has none.")
    bad = [type(m).__name__ for m in found if not isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d))]
    if bad:
        raise ValueError(f"Sequence plan's halo convs {patterns} match modules that are not convs: {bad}.")
    return found


def apply_halo_convs(transformer: torch.nn.Module, patterns: tuple[str, ...], state: SequenceState) -> None:
    """Register a `HaloConvHook` on every conv of `transformer` whose path matches one of `patterns`."""
    for conv in _halo_modules(transformer, patterns):
        HookRegistry.check_if_exists_or_initialize(conv).register_hook(HaloConvHook(state), _HALO_HOOK)


def remove_halo_convs(transformer: torch.nn.Module, patterns: tuple[str, ...]) -> None:
    """Remove the hooks that `apply_halo_convs` registered."""
    for conv in _halo_modules(transformer, patterns):
        HookRegistry.check_if_exists_or_initialize(conv).remove_hook(_HALO_HOOK, recurse=False)
