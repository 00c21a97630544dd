"""Plan specs for sequences split in whole rows (or frames) of their token grid, for models that convolve over it.

Sana's Mix-FFN reshapes the tokens of an image to `[B, C, H, W]` and runs a 3x3 depthwise conv; Sana-Video's
reshapes each frame the same way and then runs a temporal conv, kernel 3, across the frames. A conv mixes
neighbouring rows, so these models split their tokens along the grid's FIRST axis: an image's rows, a video's frames
(the grid is flattened frame-major, so each rank's tokens stay one contiguous run, and a video's spatial conv sees
whole frames and needs nothing). Rows or frames are dealt out as `torch.tensor_split` deals them (the first
`n % P` ranks take one more), whatever the token count divides by, so uneven heights work at any P up to the
number of rows. Every rank holds at least one row, which is all a kernel-3 conv needs from each neighbour.

- `GridInput`, on the transformer's latent input `[B, C, (F,) H, W]`: reads the token grid, after patching, and
  fixes this forward's split (`SequenceState.chunks`). The latent itself stays whole.
- `GridTokens`: any per-token tensor (tokens, rotary tables, per-token timesteps) split the same way; left whole
  where its token dim has length 1 (it broadcasts).
- `GridTokensEach`: a list or tuple of them (ControlNet residuals).
- `GridCount`: an `int` argument that counts the rows (or frames) of the whole grid, such as the `height` a block
  unflattens its tokens to: each rank is passed its own count.
- `SequencePlan.halo_convs`: the conv modules over the split axis. Before each runs, it exchanges a halo of rows with
  its neighbour ranks (`halo.conv_rows`, the VAE split's exchange; `grid.py`), so it returns exactly this rank's rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..compat import ContextParallelInput
from ..halo import row_sizes
from .base import SplitEach

if TYPE_CHECKING:
    from ..sequence import SequenceState


@dataclass(frozen=True)
class GridInput(ContextParallelInput):
    """The latent input `[B, C, (F,) H, W]`, kept whole: it fixes how this forward's tokens are split, in whole
    units of the grid's first axis (rows of an image, frames of a video), after patching by `patch`.

    Raises `ValueError` (on every rank: the shapes are the same on each) when the grid has fewer of those units than
    there are ranks.
    """

    patch: tuple[int, ...] = (1, 1)
    split_dim: int = 2
    expected_dims: int | None = None

    def split_tensor(self, x: torch.Tensor, state: SequenceState, name: str) -> torch.Tensor:
        grid = [n // p for n, p in zip(x.shape[2:], self.patch)]  # (F,) H, W after patching
        units, P = grid[0], state.group.size
        if units < P:
            what = "frames" if len(grid) == 3 else "rows"
            raise ValueError(
                f"`{name}` has {units} {what} of tokens (after patching), fewer than the {P} ranks sharing them: "
                f"each rank holds whole {what}, so that the model's convs over the token grid stay exact. Use at "
                f"most {units} ranks, or larger inputs."
            )
        per_unit = math.prod(grid[1:])
        state.record_split(units * per_unit)
        state.chunks = tuple(n * per_unit for n in row_sizes(units, P))
        return x


def _grid_split(x: torch.Tensor, dim: int, state: SequenceState, name: str) -> torch.Tensor:
    if x.shape[dim] == 1:  # one row for every token: it broadcasts
        return x
    if state.chunks is None or sum(state.chunks) != x.shape[dim]:
        raise ValueError(
            f"`{name}` has {x.shape[dim]} tokens along dim {dim}, but this forward's token grid has "
            f"{sum(state.chunks) if state.chunks else 'not been read'}: its plan must read the grid (GridInput) first."
        )
    rank = state.group.rank
    return x.narrow(dim, sum(state.chunks[:rank]), state.chunks[rank])


@dataclass(frozen=True)
class GridTokens(ContextParallelInput):
    """A per-token tensor split along `split_dim` in whole rows (or frames) of the grid `GridInput` read; left whole
    when that dim has length 1."""

    def split_tensor(self, x: torch.Tensor, state: SequenceState, name: str) -> torch.Tensor:
        return _grid_split(x, self.split_dim, state, name)


@dataclass(frozen=True)
class GridTokensEach(SplitEach):
    """A list or tuple of per-token tensors (ControlNet residuals), each split like `GridTokens`."""

    def split_tensor(self, x: torch.Tensor, state: SequenceState, name: str) -> torch.Tensor:
        return _grid_split(x, self.split_dim, state, name)


@dataclass(frozen=True)
class GridCount:
    """An `int` argument that counts the whole grid's rows (or frames): each rank is passed how many it holds."""

    def split(self, value, state: SequenceState, name: str):
        if not isinstance(value, int) or state.group.size == 1:
            return value
        return row_sizes(value, state.group.size)[state.group.rank]


PLANS: dict = {}  # specs only; the plans that use them sit in their family modules
