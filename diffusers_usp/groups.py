"""Process groups: which ranks share one attention (Ulysses), which pass key/value blocks around a ring of Ulysses
groups (ring), which run the other branch of classifier-free guidance (CFG), and where this process sits in each.

`Group` is the one type of all of them: a process group plus this rank's place in it."""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

import torch
import torch.distributed as dist

if TYPE_CHECKING:
    from torch.distributed.device_mesh import DeviceMesh


@dataclass(frozen=True)
class Group:
    """A process group plus this process's place in it, read once so that hot paths make no queries: the Ulysses
    group, a ring group, the CFG axis, or the sequence group (ring and Ulysses flattened).

    Rank and size are plain ints taken at construction: `torch.compile(fullgraph=True)` then sees constants instead
    of `dist.get_rank()` calls inside the graph.

    Args:
        group (`torch.distributed.ProcessGroup`, *optional*):
            The process group. `None` means the default (world) group.
        rank (`int`):
            This process's rank within `group`.
        size (`int`):
            The number of ranks in `group` (for the Ulysses group, the Ulysses degree P).
    """

    group: dist.ProcessGroup | None
    rank: int
    size: int

    def __post_init__(self):
        if self.size < 1 or not 0 <= self.rank < self.size:
            raise ValueError(f"Invalid group: rank {self.rank} of size {self.size}.")


def resolve_group(group: dist.ProcessGroup | None = None) -> Group:
    """Resolve a process group argument (the group that splits the sequence) into a `Group`.

    With no process group initialized and no launcher around (a plain `python script.py`), this is a group of one and
    every USP path is an exact no-op. Under a launcher that asked for several processes (`WORLD_SIZE > 1`) but with no
    process group yet, it fails with the fix, rather than silently running P independent copies.

    Args:
        group (`torch.distributed.ProcessGroup`, *optional*):
            The group to use. Defaults to the default group created by `accelerate.PartialState()` or
            `torch.distributed.init_process_group`.
    """
    if dist.is_available() and dist.is_initialized():
        return Group(group, dist.get_rank(group), dist.get_world_size(group))
    if group is not None:
        raise ValueError("A process group was given, but torch.distributed is not initialized.")
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1:
        raise ValueError(
            f"This process was launched as one of WORLD_SIZE={launched}, but no process group exists. Create one "
            "before calling diffusers_usp: `accelerate.PartialState()` (under `accelerate launch --multi_gpu "
            "--num_processes N`) or `torch.distributed.init_process_group()` (under torchrun)."
        )
    return Group(None, 0, 1)


# The mesh axes, outermost first, ordered by how much they exchange per step. CFG exchanges one output per step, so
# it may cross machines. Ring attention shifts each attention's key/value blocks between neighbours, overlapped with
# attention. Ulysses' per-layer all-to-alls are the heaviest traffic, so its ranks are the innermost, consecutive
# ones: with 8 processes per machine and a Ulysses degree of 8, each Ulysses group is one machine.
MESH_AXES = ("cfg", "ring", "ulysses")


@dataclass(frozen=True)
class ParallelDims:
    """How the ranks of one group divide among the parallelisms: `cfg` groups (CFG parallel), each a ring of `ring`
    Ulysses groups of `ulysses` ranks, laid out as a `DeviceMesh` with axes `MESH_AXES`.

    Validated where it is made, with the numbers in the message; the mesh and its process groups are built on first
    use of `mesh`, which every rank of `ranks` must reach in the same order (creating process groups is collective).

    Args:
        ranks (`tuple[int, ...]`): the global ranks of the group being divided, in order. Consecutive ranks share a
            Ulysses group: with 8 ranks, `cfg=2` and `ring=2`, ranks 0-3 run one branch of classifier-free guidance
            as a ring of (0, 1) and (2, 3), and ranks 4-7 the other.
        cfg (`int`, defaults to 1): 1, or 2 to run the conditional and unconditional branches of classifier-free
            guidance on two groups of ranks.
        ring (`int`, defaults to 1): the ring degree: how many Ulysses groups split one sequence, passing key/value
            blocks around a ring.
        timeout (`datetime.timedelta`, *optional*): the timeout of every process group of the mesh; `None` for
            torch's default.
    """

    ranks: tuple[int, ...]
    cfg: int = 1
    ring: int = 1
    timeout: timedelta | None = None

    def __post_init__(self):
        if self.cfg not in (1, 2):
            raise ValueError(
                f"cfg_degree must be 1 (off) or 2 (the conditional and unconditional branches of classifier-free "
                f"guidance on two groups of ranks), not {self.cfg}."
            )
        if not isinstance(self.ring, int) or self.ring < 1:
            raise ValueError(f"ring_degree must be a positive integer, not {self.ring!r}.")
        if self.world % (self.cfg * self.ring):
            what = f"ring_degree ({self.ring})" if self.cfg == 1 else f"cfg_degree ({self.cfg})"
            if self.cfg > 1 and self.ring > 1:
                what = f"cfg_degree ({self.cfg}) x ring_degree ({self.ring}) = {self.cfg * self.ring}"
            raise ValueError(
                f"{what} must divide the world size ({self.world}): launch a multiple of {self.cfg * self.ring} "
                f"processes, or lower the degree. The Ulysses degree is what is left: world // "
                f"(cfg_degree x ring_degree)."
            )

    @property
    def world(self) -> int:
        return len(self.ranks)

    @property
    def ulysses(self) -> int:
        return self.world // (self.cfg * self.ring)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.cfg, self.ring, self.ulysses)

    @property
    def _built(self) -> tuple[DeviceMesh, dist.ProcessGroup]:
        return reused(self, self._build)

    def _build(self) -> tuple[DeviceMesh, dist.ProcessGroup]:
        # Its process groups are made here with `new_group` and wrapped by `DeviceMesh.from_group`, rather than by
        # `init_device_mesh`, for two reasons:
        # - `init_device_mesh` takes a timeout only inside a backend-specific options object (NCCL's, gloo's); a
        #   timeout passed straight to `new_group` works for any backend.
        # - Over a `group=` that is a subset of the world (disjoint groups each generating their own images), the
        #   groups `DeviceMesh` creates are collectives of the whole world, which ranks of the other groups never
        #   join. `use_local_synchronization` makes each one a collective of its members only (and names it from
        #   its ranks, so disjoint groups cannot collide). Every rank still walks every group in the same order,
        #   axis by axis, which keeps overlapping groups from deadlocking (torch's note on `new_group`).
        # The sequence group (ring x Ulysses flattened, what the split and gather of the sequence use) is made the
        # same way rather than by `DeviceMesh._flatten`, which is private and takes no timeout.
        from torch.distributed.device_mesh import DeviceMesh  # here: importing it costs every user of this module

        grid = torch.tensor(self.ranks, dtype=torch.int).view(self.shape)
        me = dist.get_rank()
        groups, sequence = [], None
        lines_per_axis = [grid.movedim(axis, -1).reshape(-1, grid.shape[axis]) for axis in range(grid.dim())]
        for lines in lines_per_axis:  # each line: the ranks of one group
            for line in lines.tolist():
                group = dist.new_group(line, timeout=self.timeout, use_local_synchronization=True)
                if me in line:
                    groups.append(group)
        sequence = groups[2]  # with no ring, the sequence group is the Ulysses group
        if self.ring > 1:
            for line in grid.reshape(self.cfg, -1).tolist():
                group = dist.new_group(line, timeout=self.timeout, use_local_synchronization=True)
                if me in line:
                    sequence = group
        device = torch.accelerator.current_accelerator()
        device_type = device.type if device is not None and dist.get_backend() != "gloo" else "cpu"
        return DeviceMesh.from_group(groups, device_type, mesh=grid, mesh_dim_names=MESH_AXES), sequence

    @property
    def mesh(self) -> DeviceMesh:
        """The `DeviceMesh` of `ranks`, shaped `shape` with axes `MESH_AXES`, built on first use."""
        return self._built[0]

    def axis(self, name: str) -> Group:
        """This process's group along one mesh axis (`"cfg"`, `"ring"` or `"ulysses"`), or along `"sequence"`: the
        ring and Ulysses axes flattened, the ranks that split one sequence (rank `ring_rank * ulysses + ulysses_rank`
        in it, so that the sequence's chunks are in ring-major order)."""
        mesh, sequence = self._built
        if name == "sequence":
            return Group(sequence, dist.get_rank(sequence), self.ring * self.ulysses)
        return Group(mesh.get_group(name), mesh.get_local_rank(name), mesh.size(MESH_AXES.index(name)))


# What `reused` made, by key, for the default process group `_REUSED_WORLD`.
_REUSED: dict[Hashable, object] = {}
_REUSED_WORLD: list[dist.ProcessGroup | None] = [None]
T = TypeVar("T")


def reused(key: Hashable, make: Callable[[], T]) -> T:
    """`make()` the first time `key` is asked for, the same object after that, for as long as the default process
    group lives (after `destroy_process_group` and a new `init_process_group`, everything is made again).

    Process groups are made through this, keyed by their layout and timeout. Each gloo or NCCL group holds threads,
    sockets or communicators until the default group is destroyed, so a new set per `parallelize` call would leak
    them: in a notebook that parallelizes a fresh pipeline per cell, or a server that reloads its model. Every rank
    makes the same calls in the same order, so every rank hits or misses together, as creating a group requires.
    """
    world = dist.group.WORLD
    if _REUSED_WORLD[0] is not world:
        _REUSED.clear()
        _REUSED_WORLD[0] = world
    if key not in _REUSED:
        _REUSED[key] = make()
    return _REUSED[key]


def group_ranks(group: dist.ProcessGroup | None = None) -> tuple[int, ...]:
    """The global ranks of `group` (default: the world), in group-rank order; `(0,)` with no process group."""
    if not (dist.is_available() and dist.is_initialized()):
        return (0,)
    return tuple(dist.get_process_group_ranks(group if group is not None else dist.group.WORLD))
