"""`PendingTensor`: a tensor returned before its values exist on this rank, filled in place by its owner, and settled
by its owner on any earlier use. CFG parallel returns one for the first call of a sequential pair (`sequential.py`)."""

from __future__ import annotations

from typing import Protocol

import torch
from torch.utils._pytree import tree_leaves

from ..compat import no_subclass_dispatch


class Owner(Protocol):
    def settle(self, reason: str) -> None:
        """Fill every pending tensor it returned, on every rank (a collective: each rank reaches it alike)."""


class PendingTensor(torch.Tensor):
    """The output of the first call of a sequential CFG pair, returned on every rank before group 1 holds its values.

    Any torch function given one, `.shape` and printing included, first settles its pair: every rank runs the same
    pipeline code, so every rank reaches that use at the same point and takes part in the broadcast from group 0.
    Once settled it is an ordinary tensor; the results of operations on it are plain tensors.
    """

    _usp_owner: Owner | None

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        for x in tree_leaves((args, kwargs)):
            if type(x) is PendingTensor and x._usp_owner is not None:
                x._usp_owner.settle("the pipeline used the conditional output before making the unconditional call")
        with no_subclass_dispatch():
            return func(*args, **kwargs)


def pending_tensor(x: torch.Tensor, owner: Owner) -> PendingTensor:
    with no_subclass_dispatch():
        pending = x.as_subclass(PendingTensor)
    pending._usp_owner = owner
    return pending


def plain(x: torch.Tensor) -> torch.Tensor:
    """The same storage as an ordinary tensor, whatever `x`'s class."""
    with no_subclass_dispatch():
        return x.as_subclass(torch.Tensor)
