"""`Step`: what one rank does for one transformer call under CFG parallel, as a CFG strategy decides it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum


class Computes(Enum):
    """Which ranks compute one call under CFG parallel: what a cache reduces its statistics over, and where a
    branch's cache state lives."""

    BOTH = "both CFG groups, each the whole call"
    SPLIT = "both CFG groups, each half of the batch"
    ONE_GROUP = "one CFG group (a call of a sequential cond/uncond pair)"


def returned(output):
    return output


@dataclass
class Step:
    """Compute the forward on `args`, `kwargs` (or not: the other CFG group computes this call), then `finish` the
    output (`None` when not computed) into what this rank returns.

    Args:
        compute (`bool`): whether this rank runs the forward.
        args (`tuple`), kwargs (`dict`): the forward's arguments, as the strategy changed them.
        finish (`Callable`): the output, or `None`, to what the call returns on this rank.
        computes (`Computes`): which ranks compute this call.
    """

    compute: bool
    args: tuple
    kwargs: dict
    finish: Callable = returned
    computes: Computes = Computes.BOTH
