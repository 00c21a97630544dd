"""`SequenceState`: what one parallelized transformer's attention processors need to know about the current forward.

Written by the split hooks (`sharding.py`) as they split, from shapes that every rank sees alike, and read by the
processors (`processor.py`) through `call`, which gives each attention call a frozen `ShardedCall`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .comm import chunk_sizes
from .groups import Group
from .inputs import InputCheck
from .layout import ShardedCall


@dataclass
class SequenceState:
    """What one parallelized transformer's attention processors need to know about the current forward.

    Args:
        group (`Group`): the ranks sharing the sequence, which hold its chunks in rank order.
        replicated_front (`bool`): whether replicated joint tokens (text) come before the sharded ones.
        check_inputs (`bool`): compare the inputs across ranks on every forward (`inputs.InputCheck`).
        ring (`Group`, *optional*): with ring attention, this rank's ring group (the ranks holding the same
            heads of different blocks); `group` is then the ring and Ulysses ranks flattened, ring-major. `None`:
            no ring, and `group` is the Ulysses group.
        ulysses (`Group`, *optional*): with ring attention, this rank's Ulysses group.
        several (`bool`): the plan splits several sequences of their own (`SequencePlan.two_sequences`, LTX-2's video
            and audio). Then P need not divide their lengths, as long as every rank's chunk of one differs from its
            chunk of any other: each call, and each gather, finds its sequence by the tokens this rank holds of it.

    Reset at every forward, from the shapes the split hooks see (the same on every rank, so no sizes are exchanged):
    `replicated`, the joint tokens every rank holds whole (text whose count P does not divide); `text`, the joint
    tokens that were split instead; `lengths`, the lengths of the sequences that were split; `chunks`, every rank's
    token count when the sequence was split in whole rows or frames of its grid (`plans/grid_specs.py`) rather than as
    `torch.tensor_split` splits it.
    """

    group: Group
    replicated_front: bool = True
    check_inputs: bool = True
    ring: Group | None = None
    ulysses: Group | None = None
    several: bool = False
    inputs: InputCheck | None = field(default=None, repr=False)
    replicated: int = 0
    text: int = 0
    replicated_subset: bool = False
    lengths: set[int] = field(default_factory=set)
    chunks: tuple[int, ...] | None = None

    def __post_init__(self):
        if (self.ring is None) != (self.ulysses is None):
            raise ValueError("SequenceState takes `ring` and `ulysses` together, or neither.")
        if self.ring is not None and self.ring.size * self.ulysses.size != self.group.size:
            raise ValueError(
                f"A ring of {self.ring.size} Ulysses groups of {self.ulysses.size} ranks does not make the "
                f"{self.group.size} ranks of the sequence group."
            )
        if self.check_inputs and self.group.size > 1:
            self.inputs = InputCheck(self.group)

    def reset(self) -> None:
        self.replicated = self.text = 0
        self.replicated_subset = False
        self.lengths.clear()
        self.chunks = None

    def record_split(self, size: int) -> None:
        """Note a sequence of `size` tokens split in this forward; several can be split only if P divides them, or, for
        a plan of several sequences, if every rank can tell their chunks apart."""
        self.lengths.add(size)
        if len(self.lengths) > 1 and self.uneven is not None and not (self.several and self._told_apart()):
            P = self.group.size
            raise ValueError(
                f"This forward splits sequences of lengths {sorted(self.lengths)} over {P} ranks, and {self.uneven} "
                f"does not divide by {P}. Several sequences can only be split evenly"
                + (", or into chunks of other sizes on every rank" if self.several else "")
                + f": choose sizes that {P} divides."
            )

    def _told_apart(self) -> bool:
        """Whether no rank holds as many tokens of one split sequence as of another (then its count names the
        sequence, on every rank alike)."""
        chunks = [chunk_sizes(n, self.group.size) for n in sorted(self.lengths)]
        return all(len({c[j] for c in chunks}) == len(chunks) for j in range(self.group.size))

    def sizes(self, local: int) -> tuple[int, ...] | None:
        """Every rank's token count of the split sequence of which this rank holds `local` tokens; `None` when all
        ranks hold the same count. With a single split sequence, its sizes whatever `local` is (the callers check)."""
        if self.chunks is not None:  # one sequence split in whole rows or frames of a token grid (plans/grid_specs.py)
            return self.chunks if len(set(self.chunks)) > 1 else None
        tokens = self.uneven
        if tokens is None:
            return None
        if len(self.lengths) > 1:  # several sequences, told apart by their chunks (`record_split`)
            P, rank = self.group.size, self.group.rank
            tokens = next((n for n in self.lengths if chunk_sizes(n, P)[rank] == local), None)
            if tokens is None:
                raise ValueError(
                    f"{local} tokens reach an attention or a gather on rank {rank}, but the sequences split in this "
                    f"forward ({sorted(self.lengths)} tokens over {P} ranks) give it other counts: its plan splits "
                    "or gathers a sequence that is not one of them. Choose token counts that P divides."
                )
            if tokens % P == 0:
                return None
        return chunk_sizes(tokens, self.group.size)

    def held(self, name: str) -> tuple[int, int, int]:
        """`(total, start, stop)`: the length of the sequence split so far in this forward, and the tokens this rank
        holds of it. `name` is the input that asks, for the error."""
        if len(self.lengths) != 1:
            raise ValueError(
                f"`{name}` refers to the sequence split before it in this forward, but {len(self.lengths)} sequences "
                f"were split so far ({sorted(self.lengths)}): its plan must split exactly one sequence before it."
            )
        (total,) = self.lengths
        sizes = self.chunks if self.chunks is not None else chunk_sizes(total, self.group.size)
        start = sum(sizes[: self.group.rank])
        return total, start, start + sizes[self.group.rank]

    @property
    def uneven(self) -> int | None:
        """The length of the split sequence when P does not divide it (its ranks then hold `chunk_sizes` tokens)."""
        return next((n for n in self.lengths if n % self.group.size), None)

    def seq_lens(self, joint: bool, local: int | None = None) -> tuple[int, ...] | None:
        """Every rank's count of sharded tokens in one attention call; `None` when all ranks hold the same count.
        `local`: the call's query tokens on this rank (finds the sequence when several were split)."""
        if self.chunks is not None:  # split in whole rows or frames of a token grid (plans/grid_specs.py)
            text = self.text // self.group.size if joint else 0
            return tuple(n + text for n in self.chunks) if len(set(self.chunks)) > 1 else None
        if self.uneven is None:
            return None
        P = self.group.size
        text = self.text // P if joint else 0
        own = None if local is None else local - text - (self.replicated if joint else 0)
        lens = self.sizes(own) if own is not None else chunk_sizes(self.uneven, P)
        return None if lens is None else tuple(n + text for n in lens)

    def call(self, joint: bool, who: str, local: int | None = None) -> ShardedCall:
        """The layout of one sharded attention call of this forward: `joint` if its sequence holds the joint text;
        `local` its query tokens on this rank."""
        return ShardedCall(
            group=self.group,
            ulysses=self.ulysses if self.ulysses is not None else self.group,
            ring=self.ring,
            replicated=self.replicated if joint else 0,
            text=self.text if joint else 0,
            replicated_front=self.replicated_front,
            seq_lens=self.seq_lens(joint, local),
            who=who,
            sharded_here=self._sharded_here(who) if joint and self.replicated_subset else None,
        )

    def _sharded_here(self, who: str) -> int:
        """This rank's sharded tokens in a joint call whose replicated block is a subset (`ReplicatedSubset`)."""
        _, start, stop = self.held(who)
        return stop - start + self.text // self.group.size
