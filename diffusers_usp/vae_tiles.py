"""Tiling spread over ranks: with `enable_tiling()` on, each rank decodes (and encodes) only its share of the tiles,
the tiles are exchanged once, and every rank blends all of them with diffusers' own tiled code, so the result is
the single-process tiled output bit for bit (each tile is computed whole, by one rank, with the same ops).

The autoencoder's `_decode`/`_encode` runs twice, its tile loop untouched:
1. **Compute.** A hook on the `decoder`/`encoder` module numbers its calls. Calls are grouped into *tiles*: a call
   whose causal cache (`conv_cache=`, `feat_cache=`) is already filled continues the tile before it (CogVideoX's
   and Wan's frame batches inside one spatial tile); any other call starts a new tile. Tile k belongs to rank
   `k % P` (round robin: tile counts per rank differ by at most one). A rank runs its own tiles; for every other
   call it learns only the output's shape: from an earlier call of the same argument shapes and place in its tile
   (first or later), or else from one run on the meta device (`MetaShapes`: no data, no FLOPs, Python time only),
   and hands the loop an uninitialized tensor of that shape. So is its own call, whose output it keeps aside: the
   loop blends in place. That pass's result is discarded.
2. **Blend.** One all-reduce of the owners' output shapes (a placeholder's shape only has to carry the loop to its
   end), one all-gather of every rank's own outputs, then the same `_decode`/`_encode` again, the hook now
   returning the gathered output of each call in order, computing nothing.

If the first call already covers the whole input's height and width, the class did not tile spatially (the input
is under its tile size, or only frames are tiled): the pass stops there and the row split (`vae.py`) runs instead,
splitting each temporal tile by rows. Tiles over frames and space together are spread like any other.
Any error in pass 1 on any rank is raised on every rank (one all-reduce before the gather), never a hang. A tile
that draws random numbers (LTX's decoder noise) makes every rank run the tiled call whole instead, with a warning
given once: one process draws each tile's noise in turn from one generator, which only a whole run repeats.

Cost: diffusers' tiled loop keeps every decoded tile until its blend; so does each rank here (placeholders in pass 1,
the gathered tiles in pass 2, padded to P times the largest share: at most one tile more per rank), plus its own
tiles (1/P of them) until the gather. Activations of one tile are those of one process. The 1x1 quant convs the
loop runs around each call, and the blend, run on every rank, twice. Tiles go round robin by count, not by size:
edge tiles are smaller, so shares differ by up to one interior tile.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from diffusers.hooks import ModelHook

from .comm import all_gather_stacked
from .compat import TorchDispatchMode
from .groups import Group

# Keyword arguments that carry a causal cache from one call of a tile to the next (CogVideoX and Mochi's
# `conv_cache`, Wan and Qwen-Image's `feat_cache`).
CACHE_KWARGS = ("conv_cache", "feat_cache")


class NotTiled(Exception):
    """The first call covers the whole input: the class did not tile it spatially."""


@dataclass
class TilePass:
    """One spread `_decode`/`_encode`: which calls this rank computed, every call's owner, and, in pass 2, the
    gathered outputs."""

    group: Group
    whole: tuple[int, ...]  # the input's (H, W): a first call as large did not tile
    stop_if_whole: bool  # False where the class has no row split to fall back to (Allegro)
    calls: int = 0
    tiles: int = 0
    position: int = 0  # of the call within its tile
    owners: list[int] = field(default_factory=list)  # every call's
    extras: list[int] = field(default_factory=list)  # every call's: 0 for a tensor output, else the tuple's length
    own: dict[int, torch.Tensor] = field(default_factory=dict)  # this rank's calls' outputs
    seen: dict = field(default_factory=dict)  # (call signature, first in its tile?) -> (shape, dtype, extras)
    replay: list[torch.Tensor] | None = None
    sums: tuple[list, list] = field(default_factory=lambda: ([], []))  # each call's input sum, in pass 1 and pass 2
    random: bool = False  # a call of this rank drew from the device's random generator

    def call(self, forward, args: tuple, kwargs: dict):
        i = self.calls
        self.calls += 1
        x = next(a for a in args if torch.is_tensor(a))
        self.sums[self.replay is not None].append(x.detach().sum(dtype=torch.float64))
        if self.replay is not None:  # pass 2: the gathered output, no compute
            if i >= len(self.replay):
                raise RuntimeError("diffusers_usp: the tiled loop made more calls when blending than when computing.")
            return self.replay[i] if not self.extras[i] else (self.replay[i],) + (None,) * (self.extras[i] - 1)
        if i == 0 and self.stop_if_whole and tuple(x.shape[-2:]) == self.whole:
            raise NotTiled
        first_call = i == 0 or not _continues(kwargs)
        self.tiles, self.position = (self.tiles + 1, 0) if first_call else (self.tiles, self.position + 1)
        owner = (self.tiles - 1) % self.group.size
        key = (_signature(args, kwargs), min(self.position, 1))
        if owner == self.group.rank:
            rng = _rng_state(x.device)
            out = forward(*args, **kwargs)
            self.random |= not torch.equal(rng, _rng_state(x.device))  # it drew random numbers (LTX's noise)
            first, rest = (out, ()) if torch.is_tensor(out) else (out[0], tuple(out[1:]))
            if self.own and first.dtype != next(iter(self.own.values())).dtype:
                raise NotImplementedError("diffusers_usp: tiles of different dtypes cannot be spread over ranks.")
            self.own[i] = first
            self.seen[key] = (first.shape, first.dtype, 0 if torch.is_tensor(out) else len(out))
        elif key in self.seen:  # a shape met before: nothing to run; the chain's cache must look filled, as after one
            rest = _fill_cache(kwargs, self.seen[key][2])
        else:
            rest = self._probe(forward, args, kwargs, key)
        shape, dtype, extras = self.seen[key]
        self.owners.append(owner)
        self.extras.append(extras)
        # The loop gets a placeholder even for this rank's own tile: its blend writes into tiles in place, and the
        # values sent to the other ranks must be the tile's own. The placeholders' values never reach the result, and
        # their shapes only have to carry the loop to its end: pass 2 uses the shapes the owners computed.
        placeholder = torch.empty(shape, dtype=dtype, device=x.device)
        return placeholder if not extras else (placeholder, *rest)

    def _probe(self, forward, args: tuple, kwargs: dict, key) -> tuple:
        """Runs the call on the meta device for its output's shape, without data or FLOPs; returns the rest of its
        output (the meta cache it filled, which sizes the next call of its tile)."""
        with MetaShapes():
            out = forward(*args, **kwargs)
        first, rest = (out, ()) if torch.is_tensor(out) else (out[0], tuple(out[1:]))
        self.seen[key] = (first.shape, first.dtype, 0 if torch.is_tensor(out) else len(out))
        return rest

    def exchange(self, device: torch.device) -> None:
        """Every call's output on every rank: one all-reduce of the owners' output shapes (each rank fills its own
        calls' rows), then one all-gather of each rank's outputs, flattened."""
        shapes = torch.zeros(self.calls, 1 + _MAX_DIMS, dtype=torch.int64, device=device)
        for i, t in self.own.items():
            shapes[i, 0] = t.dim()
            shapes[i, 1 : 1 + t.dim()] = torch.tensor(t.shape)
        dist.all_reduce(shapes, group=self.group.group)
        shapes = [torch.Size(row[1 : 1 + row[0]]) for row in shapes.tolist()]
        sizes = [0] * self.group.size
        for owner, shape in zip(self.owners, shapes):
            sizes[owner] += shape.numel()
        dtype = next(iter(self.seen.values()))[1]
        flat = torch.zeros(max(sizes), dtype=dtype, device=device)  # padded to the largest share, for the collective
        start = 0
        for i in sorted(self.own):
            flat[start : start + self.own[i].numel()] = self.own[i].reshape(-1)
            start += self.own[i].numel()
        self.own = {}  # the gathered copy replaces them
        # [P, max(sizes)]: each rank's outputs in call order; the replay views it in place (no trimmed copy)
        every = all_gather_stacked(flat, self.group)
        starts = [0] * self.group.size
        self.replay = []
        for owner, shape in zip(self.owners, shapes):
            self.replay.append(every[owner].narrow(0, starts[owner], shape.numel()).view(shape))
            starts[owner] += shape.numel()
        self.calls = 0


_MAX_DIMS = 8
_WARNED: set[str] = set()


def _rng_state(device: torch.device) -> torch.Tensor:
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.random.get_rng_state()


def _set_rng_state(device: torch.device, state: torch.Tensor) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.random.set_rng_state(state)


# What a skipped call returns for the cache in its output, and leaves in a cache list it was given: not empty, so
# that the next call continues the tile on every rank (the owner's real cache is filled). Only this rank's hook reads
# it: the rest of a skipped tile is skipped too, and the class clears its cache before the next tile.
_FILLED = {"diffusers_usp": "the cache of a tile another rank computes"}


def _fill_cache(kwargs: dict, extras: int) -> tuple:
    for name in CACHE_KWARGS:
        cache = kwargs.get(name)
        if isinstance(cache, list) and cache and all(c is None for c in cache):
            cache[0] = _FILLED
    return (_FILLED,) * max(extras - 1, 0)


def _continues(kwargs: dict) -> bool:
    """Whether a call's causal cache is already filled (it continues the tile of the call before it)."""
    for name in CACHE_KWARGS:
        cache = kwargs.get(name)
        if isinstance(cache, dict) and cache or torch.is_tensor(cache):
            return True
        if isinstance(cache, (list, tuple)) and any(c is not None for c in cache):
            return True
    return False


def _signature(args: tuple, kwargs: dict) -> tuple:
    """The shapes and plain values of a call's arguments, its caches left out (their fill is the tile position)."""
    describe = lambda v: (tuple(v.shape), v.dtype) if torch.is_tensor(v) else repr(v)  # noqa: E731
    kept = sorted((k, v) for k, v in kwargs.items() if k not in CACHE_KWARGS)
    return tuple(map(describe, args)) + tuple((k, describe(v)) for k, v in kept)


class MetaShapes(TorchDispatchMode):
    """Runs every op on the meta device (its inputs, parameters included, turned into meta tensors: no copy), so a
    module's forward yields its outputs' shapes at the cost of Python alone. torch's `FakeTensorMode` does the same
    with bookkeeping this needs not: about 3x slower on a tiny Wan decoder here. An op that needs data (`.item()`)
    raises: the tiles' status all-reduce then raises on every rank."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if "device" in kwargs:  # factories (`torch.arange(..., device=x.device)`): on meta too
            kwargs["device"] = torch.device("meta")
        return func(*_meta(args), **_meta(kwargs))


def _meta(value):
    """`value` (an aten op's arguments: tensors, nested in lists, tuples and dicts) with every tensor on meta."""
    if isinstance(value, torch.Tensor):
        return value if value.is_meta else value.to("meta")
    if isinstance(value, (list, tuple)):
        return type(value)(_meta(v) for v in value)
    if isinstance(value, dict):
        return {k: _meta(v) for k, v in value.items()}
    return value


class TileHook(ModelHook):
    """On an autoencoder's `decoder`/`encoder`: its own forward, or, while a spread tiled call runs, `TilePass.call`."""

    def __init__(self, owner) -> None:
        super().__init__()
        self.owner = owner  # the `VaeSplit`, whose `tiles` is the running pass

    def new_forward(self, module, *args, **kwargs):
        tiles = self.owner.tiles
        if tiles is None:
            return self.fn_ref.original_forward(*args, **kwargs)
        return tiles.call(self.fn_ref.original_forward, args, kwargs)


def spread_tiles(split, original, x: torch.Tensor, args: tuple, kwargs: dict):
    """`original(x, *args, **kwargs)` (a tiled `_decode`/`_encode`) with its tiles spread over `split.group`; `None`
    if the class did not tile `x` spatially (and has a row split to fall back to)."""
    group = split.group
    tiles = split.tiles = TilePass(group, tuple(x.shape[-2:]), stop_if_whole=not split.spec.tiles_only)
    rng = _rng_state(x.device)
    try:
        failed, whole = None, False
        try:
            original(x, *args, **kwargs)
        except NotTiled:
            whole = True
        except Exception as error:  # raised on every rank below, before any rank waits in the gather
            failed = error
        status = [failed is not None, whole, tiles.random, tiles.calls, -tiles.calls]
        status = torch.tensor(status, dtype=torch.int64, device=x.device)
        dist.all_reduce(status, op=dist.ReduceOp.MAX, group=group.group)
        if status[0]:
            raise RuntimeError("diffusers_usp: a rank failed computing its tiles; see its error.") from failed
        if status[1]:
            return None
        if status[2]:  # one process draws each tile's noise in turn from one generator: only a whole run repeats it
            split.tiles = None
            _set_rng_state(x.device, rng)
            name = type(getattr(original, "__self__", None)).__name__
            if name not in _WARNED:
                _WARNED.add(name)
                warnings.warn(
                    f"diffusers_usp: {name}'s tiles draw random numbers (decoder noise), so they are not spread over "
                    "ranks: its tiled decode runs whole on every rank, as on one process.",
                    stacklevel=4,
                )
            return original(x, *args, **kwargs)
        if status[3] != -status[4]:
            raise RuntimeError("diffusers_usp: the ranks made different numbers of tile calls (different inputs?).")
        tiles.exchange(x.device)
        out = original(x, *args, **kwargs)
        # A loop that cut a call's input from an earlier call's output would have fed placeholders to pass 1: the
        # inputs' sums would differ between the passes on some rank. One all-reduce makes every rank refuse.
        first, second = (torch.stack(s) if s else torch.zeros(0, dtype=torch.float64) for s in tiles.sums)
        same = first.shape == second.shape and bool(((first == second) | (first.isnan() & second.isnan())).all())
        differ = torch.tensor([not same], dtype=torch.int64, device=x.device)
        dist.all_reduce(differ, op=dist.ReduceOp.MAX, group=group.group)
        if differ.item():
            raise RuntimeError(
                f"diffusers_usp: {type(getattr(original, '__self__', None)).__name__}'s tiled loop feeds a tile's "
                "output into another tile's input, so its tiles cannot be spread over ranks. Call "
                "vae.disable_tiling() to split it by rows."
            )
        return out
    finally:
        split.tiles = None
