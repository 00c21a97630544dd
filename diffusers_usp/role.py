"""`AttentionRole`: what one attention module does under sequence parallelism, decided by `parallelize` from the
model's plan and given to its `USPProcessor` at construction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .sequence import SequenceState

_MODES = ("heads", "sharded", "cross")


@dataclass(frozen=True)
class AttentionRole:
    """What one attention module does under Ulysses sequence parallelism. `parallelize` builds one per module.

    Args:
        mode (`str`, defaults to `"heads"`):
            - `"heads"`: the sequence is not sharded. Every rank holds all tokens, attends its own slice of the heads,
              and one all-gather completes them. A bare `USPProcessor()` has this role, and warns once.
            - `"sharded"`: the module attends the sharded sequence: one all-to-all in, one out (Ulysses).
            - `"cross"`: cross-attention to keys and values that are whole on every rank (text; or a text refiner
              that runs before the split, whose whole sequence is "text"): it attends locally, with no collective.
        sequence (`SequenceState`, *optional*):
            The transformer's per-forward sharding state. Required by `"sharded"` and `"cross"`, which take their
            process group from it; not allowed with `"heads"`.
        joint (`bool`, defaults to `True`):
            Whether this module's sequence holds the plan's joint text tokens (a replicated block when P does not
            divide their count).
        sharded_queries (`bool`, defaults to `False`):
            For `"cross"`: its queries are this rank's share of the sharded sequence (a cross-attention inside the
            sharded blocks). A call made without its context (`encoder_hidden_states=None`) then self-attends those
            tokens, so that call runs as sharded self-attention.
        two_sequences (`bool`, defaults to `False`):
            For `"sharded"`: its queries and its keys/values are two different sharded sequences (LTX-2's
            audio-to-video and video-to-audio attention): `two_sequences.py` exchanges both, no mask.
        kv_prefix (`bool`, defaults to `False`):
            For `"sharded"`: its keys and values are `[whole tokens, this rank's tokens]` while its queries are this
            rank's tokens only; the whole tokens are attended as a replicated K/V prefix (`SequencePlan.kv_prefix`).
        model (`str`), path (`str`):
            The transformer class and the module's path in it, for error messages.
    """

    mode: str = "heads"
    sequence: SequenceState | None = None
    joint: bool = True
    sharded_queries: bool = False
    two_sequences: bool = False
    kv_prefix: bool = False
    model: str = ""
    path: str = ""

    def __post_init__(self):
        if self.mode not in _MODES:
            raise ValueError(f"AttentionRole mode must be one of {_MODES}, not {self.mode!r}.")
        if (self.mode == "heads") != (self.sequence is None):
            raise ValueError(
                f"AttentionRole(mode={self.mode!r}) "
                + ("takes no `sequence`." if self.mode == "heads" else "needs the transformer's `sequence` state.")
            )
        if self.sharded_queries and self.mode != "cross":
            raise ValueError("`sharded_queries` describes a cross module; this role is " + repr(self.mode) + ".")
        if self.two_sequences and self.mode != "sharded":
            raise ValueError("`two_sequences` describes a sharded module; this role is " + repr(self.mode) + ".")
        if self.kv_prefix and self.mode != "sharded":
            raise ValueError("`kv_prefix` describes a sharded module; this role is " + repr(self.mode) + ".")

    def __str__(self) -> str:
        return f"{self.model} `{self.path}` ({self.mode})" if self.path else self.mode
