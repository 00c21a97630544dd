"""The Ulysses process group: which ranks share one attention, and where this process sits in it."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch.distributed as dist


@dataclass(frozen=True)
class UlyssesGroup:
    """A process group plus this process's place in it, read once so that hot paths make no queries.

    Rank and size are plain ints taken at construction: `torch.compile(fullgraph=True)` then sees constants instead
    of `dist.get_rank()` calls inside the graph.

    Args:
        group (`torch.distributed.ProcessGroup`, *optional*):
            The ranks that split one sequence. `None` means the default (world) group.
        rank (`int`):
            This process's rank within `group`.
        size (`int`):
            The number of ranks in `group` (the Ulysses degree P).
    """

    group: dist.ProcessGroup | None
    rank: int
    size: int

    def __post_init__(self):
        if self.size < 1 or not 0 <= self.rank < self.size:
            raise ValueError(f"Invalid Ulysses group: rank {self.rank} of size {self.size}.")


def ulysses_group(group: dist.ProcessGroup | None = None) -> UlyssesGroup:
    """Resolve the group that splits the sequence.

    With no process group initialized and no launcher around (a plain `python script.py`), this is a group of one and
    every USP path is an exact no-op. Under a launcher that asked for several processes (`WORLD_SIZE > 1`) but with no
    process group yet, it fails with the fix, rather than silently running P independent copies.

    Args:
        group (`torch.distributed.ProcessGroup`, *optional*):
            The group to use. Defaults to the default group created by `accelerate.PartialState()` or
            `torch.distributed.init_process_group`.
    """
    if dist.is_available() and dist.is_initialized():
        return UlyssesGroup(group, dist.get_rank(group), dist.get_world_size(group))
    if group is not None:
        raise ValueError("A process group was given, but torch.distributed is not initialized.")
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1:
        raise ValueError(
            f"This process was launched as one of WORLD_SIZE={launched}, but no process group exists. Create one "
            "before calling diffusers_usp: `accelerate.PartialState()` (under `accelerate launch --multi_gpu "
            "--num_processes N`) or `torch.distributed.init_process_group()` (under torchrun)."
        )
    return UlyssesGroup(None, 0, 1)
