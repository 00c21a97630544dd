"""Every rank must be given the same transformer inputs on every forward: ranks fed different latents, prompts or
timesteps would each attend to a sequence assembled from mismatched pieces and return a wrong image without a word.

`InputCheck` compares a checksum per input (its float64 sum) across the ranks of a sequence group:

- on the first forward, with one blocking all-reduce, before any other collective: the common mistake (per-rank
  seeds) is refused before a wrong step is computed;
- on every later forward, with no collective of its own: the checksums ride at the end of this rank's chunk in the
  output all-gather the forward makes anyway (their float64 bytes viewed as a few extra rows of the output's dtype,
  which an all-gather copies bit for bit), and are compared at the start of the next forward. A difference raises
  on every rank, naming the inputs, at most one forward late, and never hangs: every rank completes the gather.

Cost per forward: one float64 sum per input (Flux 1024²: about 2.4 M elements read once), one extra row per rank in
the output gather (plus a copy of the output to append and strip it), and one host sync at the start of the next
forward, on a few bytes the GPU computed a whole forward earlier: no collective, and none of it inside the blocks.

Not checked: forwards traced by `torch.compile` around the transformer's root (the comparison is a data-dependent
branch) and steps replayed from a CUDA graph (no Python runs). `compile_repeated_blocks` leaves the root eager, so
those forwards are checked; so are the eager warm-up steps before a capture.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from .comm import all_gather_dim
from .groups import Group

_FIX = (
    "Every rank must see the same latents, prompt embeddings and timesteps: seed generators identically (e.g. "
    "torch.Generator().manual_seed(0)), pass the same prompt on every rank, and change the latents alike on every "
    "rank (a callback_on_step_end too). (Turn this check off with parallelize(..., check_inputs=False).)"
)


def named_tensors(params: list[str], args: tuple, kwargs: dict) -> list[tuple[str, torch.Tensor]]:
    """Every tensor among a forward's arguments, named by its parameter (`name[i]` inside lists and tuples)."""
    found: list[tuple[str, torch.Tensor]] = []

    def walk(name: str, value) -> None:
        if isinstance(value, torch.Tensor):
            found.append((name, value))
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(f"{name}[{i}]", v)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{name}[{k!r}]", v)

    for i, value in enumerate(args):
        walk(params[i] if i < len(params) else f"args[{i}]", value)
    for name, value in kwargs.items():
        walk(name, value)
    return found


def checksums(tensors: list[torch.Tensor]) -> torch.Tensor:
    """`[n]` float64: one sum per tensor (a zero for none, so that every rank sends the same length)."""
    if not tensors:
        return torch.zeros(1, dtype=torch.float64)
    return torch.stack([t.detach().sum(dtype=torch.float64) for t in tensors])


class InputCheck:
    """The per-forward input comparison of one sequence group (see the module docstring).

    Args:
        group (`Group`): the ranks that must see the same inputs.
    """

    def __init__(self, group: Group) -> None:
        self.group = group
        self.first = True
        self.names: list[str] = []
        self.sums: torch.Tensor | None = None  # this forward's, to be carried by its gather
        self.received: tuple[list[str], torch.Tensor] | None = None  # the last gather's, compared at the next forward

    def begin(self, params: list[str], args: tuple, kwargs: dict) -> None:
        """At a forward's entry: raise if the last forward's inputs differed, then checksum this one's."""
        self.sums = None
        if torch.compiler.is_compiling() or (torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()):
            return
        self.compare()
        named = named_tensors(params, args, kwargs)
        names, sums = [n for n, _ in named], checksums([t for _, t in named])
        if self.first:
            self.first = False
            check_same_inputs(sums, self.group, names)
            return
        self.names, self.sums = names, sums

    def gather(self, x: torch.Tensor, dim: int, sizes: tuple[int, ...] | None) -> torch.Tensor:
        """`all_gather_dim(x, dim, group, sizes)`, carrying this forward's checksums at the end of each rank's chunk."""
        sums, self.sums = self.sums, None
        if sums is None or torch.compiler.is_compiling():
            return all_gather_dim(x, dim, self.group, sizes)
        dim = dim % x.dim()
        slab = list(x.shape)
        slab[dim] = 1
        row_bytes = x.element_size() * max(1, x.numel() // max(x.shape[dim], 1))
        rows = -(-sums.numel() * 8 // row_bytes)  # ceil: extra rows along `dim` that hold the checksums' bytes
        slab[dim] = rows
        payload = torch.zeros(rows * row_bytes, dtype=torch.uint8, device=x.device)
        payload[: sums.numel() * 8] = sums.to(x.device).view(torch.uint8)
        carried = torch.cat([x, payload.view(x.dtype).view(slab)], dim=dim)
        lengths = [(n if sizes is not None else x.shape[dim]) + rows for n in (sizes or [0] * self.group.size)]
        out = all_gather_dim(carried, dim, self.group, tuple(lengths))
        pieces = out.split([piece for n in lengths for piece in (n - rows, rows)], dim=dim)
        received = torch.stack([p.contiguous().view(torch.uint8).flatten()[: sums.numel() * 8] for p in pieces[1::2]])
        self.received = (self.names, received)  # compared at the next forward: no host sync here
        return torch.cat(pieces[0::2], dim=dim)

    def compare(self) -> None:
        """Raise on every rank if the ranks' checksums carried by the last gather differ."""
        if self.received is None:
            return
        (names, received), self.received = self.received, None
        # (P, n * 8) bytes -> (P, n): an input differs where any rank's bytes differ from rank 0's.
        differs = (received != received[:1]).view(received.shape[0], -1, 8).any(dim=2).any(dim=0)
        _raise_if(names, differs.cpu(), "the previous forward")


def check_same_inputs(sums: torch.Tensor, group: Group, names: list[str] | None = None) -> None:
    """Raise on every rank if the ranks' checksums `sums` (`checksums`) differ: one blocking all-reduce."""
    both = torch.cat([sums, -sums])  # the max of [s, -s] is (max, -min): equal iff every rank agrees
    dist.all_reduce(both, op=dist.ReduceOp.MAX, group=group.group)
    high, negative_low = both.chunk(2)
    _raise_if(names, ~((high == -negative_low) | (high.isnan() & negative_low.isnan())), "this forward")


def _raise_if(names: list[str] | None, differs: torch.Tensor, when: str) -> None:
    if bool(differs.any()):
        which = ", ".join(f"`{n}`" for n, d in zip(names, differs.tolist()) if d) if names else "inputs"
        raise RuntimeError(
            f"diffusers_usp: the ranks were given different transformer inputs in {when} ({which} differ). {_FIX}"
        )
