"""Where one sharded attention call's tokens lie across the ranks: `ShardedCall`, derived from the forward's split
(`sequence.py` builds one per call) and read by every attention path (`attention.py`, `token_mask.py`). No diffusers
imports."""

from __future__ import annotations

from dataclasses import dataclass

from .groups import Group


@dataclass(frozen=True)
class ShardedCall:
    """How one sharded attention call's tokens lie across the ranks, derived from the forward's split.

    Args:
        group (`Group`): the ranks sharing the sequence (ring and Ulysses flattened, ring-major).
        ulysses (`Group`): the ranks of this rank's Ulysses group (`group` itself without a ring).
        ring (`Group`, *optional*): the ranks holding the same heads of the other ring blocks; `None` without a ring.
        replicated (`int`): joint tokens every rank holds whole (text whose count P does not divide).
        replicated_front (`bool`): whether joint text (replicated or sharded) precedes the other tokens.
        text (`int`): joint text tokens that were sharded with the rest (each rank holds `text // P` of them, before
            its other tokens if `replicated_front`, after them otherwise).
        seq_lens (`tuple[int, ...]`, *optional*): every rank's sharded token count, when they differ.
        who (`str`): the module, for error messages.
        sharded_here (`int`, *optional*): this rank's sharded token count, when the call may keep any subset of
            the `replicated` tokens (Mochi's valid text per sample): its replicated block is then the rest.
    """

    group: Group
    ulysses: Group
    ring: Group | None = None
    replicated: int = 0
    replicated_front: bool = True
    text: int = 0
    seq_lens: tuple[int, ...] | None = None
    who: str = "attention"
    sharded_here: int | None = None

    def positions(self, local: int) -> tuple[list[int], list[list[int]]]:
        """Where the tokens lie in the whole sequence, the order a single process's dense mask refers to: the
        positions of the replicated block, and of each rank's sharded tokens in their local order. `local` is this
        rank's sharded token count (for even splits)."""
        P, R, T = self.group.size, self.replicated, self.text
        lens = self.seq_lens if self.seq_lens is not None else (local,) * P
        t = T // P  # text tokens per rank, before (front) or after its other tokens
        others = [n - t for n in lens]
        N = sum(others)
        first = R + T if self.replicated_front else 0  # where the other tokens start in the whole sequence
        text_at = 0 if self.replicated_front else N
        replicated = list(range(0, R)) if self.replicated_front else list(range(N, N + R))
        chunks, start = [], first
        for c, n in enumerate(others):
            text = list(range(text_at + c * t, text_at + (c + 1) * t))
            own = list(range(start, start + n))
            chunks.append(text + own if self.replicated_front else own + text)
            start += n
        return replicated, chunks
