"""Masks built from per-token metadata of the whole sequence, applied after the exchange. No diffusers imports.

After the Ulysses exchange a rank holds every query and key of its heads, so any mask is exact if the rank can form
it for all of them. `BlockCausalMask` forms it from a few runs of metadata, never from an S x S tensor:

- causal tokens (block id -1) attend every key up to themselves (`j <= i`);
- the tokens of one block (a run with an id >= 0, e.g. one image) attend each other both ways, and every key before
  the block;
- an optional key-padding vector (`[B, S]`) drops keys everywhere.

So query i attends exactly the keys `j < limit(i)` that are valid: `limit(i) = i + 1` for a causal token, the end of
its block otherwise. That covers causal, block-causal (Qwen-Image 2.1's text/image sequence) and prefix masks.

Attention runs in pieces of query rows, as the models' own per-segment processors do: a run of rows that share one
limit (a block) attends its key prefix `[0, limit)` under the key-padding vector alone; a run of causal rows attends
the prefix up to its last row under a `[rows, keys]` triangle. A rank therefore never allocates more mask than the
single-process model does per segment. Around a ring the same pieces are formed per key block, and a piece whose
keys all lie beyond its limit (a block entirely in its future) is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .lse import attention_lse
from .ring import key_bias, ring_attention
from .ulysses import Kernel, kv_for_queries, ulysses_in, ulysses_out

if TYPE_CHECKING:
    from .layout import ShardedCall


@dataclass(frozen=True)
class BlockCausalMask:
    """A block-causal mask over the whole sequence, in the single process's token order, from per-token metadata.

    Args:
        runs (`tuple[tuple[int, int, int], ...]`): `(start, stop, block)` runs covering `[0, S)` in order. `block` is
            -1 for causal tokens, or an id >= 0 shared by the tokens of one bidirectional block (one run per id).
        key_valid (`torch.Tensor`, *optional*): `[B, S]` boolean, False at keys no query may attend (padding).
    """

    runs: tuple[tuple[int, int, int], ...]
    key_valid: torch.Tensor | None = None

    def __post_init__(self):
        stops = [0] + [stop for _, stop, _ in self.runs]
        if any(start != stops[i] or stop <= start for i, (start, stop, _) in enumerate(self.runs)):
            raise ValueError(f"BlockCausalMask runs must tile [0, S) in order, without gaps: got {self.runs}.")
        ids = [block for *_, block in self.runs if block >= 0]
        if len(ids) != len(set(ids)):
            raise ValueError(f"Each block id of a BlockCausalMask must make one run (a contiguous block): {self.runs}.")
        if self.key_valid is not None and self.key_valid.shape[-1] != self.length:
            raise ValueError(f"key_valid covers {self.key_valid.shape[-1]} keys, the runs {self.length}.")

    @property
    def length(self) -> int:
        return self.runs[-1][1] if self.runs else 0

    def limits(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(limit, causal)` of each position (CPU long tensor): the first key position it may not attend, and
        whether it is a causal token (its limit then differs from its neighbours')."""
        starts = torch.tensor([start for start, _, _ in self.runs])
        stops = torch.tensor([stop for _, stop, _ in self.runs])
        causal_run = torch.tensor([block < 0 for *_, block in self.runs])
        run = torch.bucketize(positions, starts, right=True) - 1
        causal = causal_run[run]
        return torch.where(causal, positions + 1, stops[run]), causal

    def pieces(self, rows: torch.Tensor, cols: torch.Tensor, device: torch.device):
        """The pieces of attention of queries at `rows` to keys at `cols` (CPU long tensors of whole-sequence
        positions, in the order the rank holds them). Yields `(r0, r1, keys, mask)`: rows `[r0, r1)` attend the
        first `keys` keys (all of them unless `cols` ascend) under `mask`, which is None, a `[B, keys]` key mask or
        a `[B or 1, 1, r1 - r0, keys]` mask (boolean, on `device`); `keys == 0` means the piece attends nothing."""
        limit, causal = self.limits(rows)
        key = torch.where(causal, -1, limit)  # rows of one piece: a run of causal rows, or of one limit
        cuts = [0, *((key[1:] != key[:-1]).nonzero().flatten() + 1).tolist(), len(rows)]
        ascending = bool((cols[1:] > cols[:-1]).all())
        for r0, r1 in zip(cuts[:-1], cuts[1:]):
            top = int(limit[r0:r1].max())
            n = int(torch.searchsorted(cols, top)) if ascending else len(cols)
            kept = cols[:n]
            mask = None
            if causal[r0] and n and int(limit[r0:r1].min()) <= int(kept.max()):  # the triangle is not all True
                mask = (kept[None, :] < limit[r0:r1, None])[None, None].to(device)
            elif not ascending:
                keep = kept < top
                mask = None if bool(keep.all()) else keep[None].to(device)
            yield r0, r1, n, self._with_valid(mask, kept, device)

    def _with_valid(self, mask, kept: torch.Tensor, device: torch.device):
        if self.key_valid is None:
            return mask
        if len(kept) and bool((kept[1:] == kept[:-1] + 1).all()):
            valid = self.key_valid[:, int(kept[0]) : int(kept[-1]) + 1]  # contiguous keys: a view
        else:
            valid = self.key_valid.index_select(1, kept.to(device))
        if mask is None:
            return valid
        return (mask & valid[:, None, None, :]) if mask.dim() == 4 else (mask & valid)


@dataclass
class PlacedMask:
    """A `BlockCausalMask` and where each token lies in it, in the interface `ring.ring_attention` takes for a mask
    over the whole sequence (`ring.DenseMask`'s): `replicated`, the positions of the replicated block; `chunks[c]`,
    those of sequence chunk c's sharded tokens in their local order (`ShardedCall.positions`)."""

    mask: BlockCausalMask
    replicated: list[int]
    chunks: list[list[int]]

    def order(self, chunks, device=None) -> torch.Tensor:
        """Positions of the replicated block, then of the given chunks, on the CPU: the host plans the pieces."""
        return torch.tensor(self.replicated + [p for c in chunks for p in self.chunks[c]])

    def attend(self, q, k, v, rows, cols, heads, scale) -> tuple[torch.Tensor, torch.Tensor]:
        """`attention_lse` of queries at `rows` and one key block at `cols`, piece by piece: `[B, h, Sq, D]` float32
        and `[B, h, Sq]`; rows of a piece with no key are `(0, -inf)`, which a merge ignores."""
        B, Sq, h, D = q.shape
        outs, lses = [], []
        for r0, r1, n, mask in self.mask.pieces(rows, cols, q.device):
            if n == 0:  # every key of this block lies beyond these rows' limit: skipped
                outs.append(q.new_zeros(B, h, r1 - r0, D, dtype=torch.float32))
                lses.append(q.new_full((B, h, r1 - r0), float("-inf"), dtype=torch.float32))
                continue
            bias = None if mask is None else key_bias(mask, True)
            out, lse = attention_lse(q[:, r0:r1], k[:, :n], v[:, :n], bias, scale)
            outs.append(out.float())
            lses.append(lse)
        return torch.cat(outs, dim=2), torch.cat(lses, dim=2)


def block_causal_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    kernel: Kernel,
    call: ShardedCall,
    mask: BlockCausalMask,
    scale: float | None = None,
) -> torch.Tensor:
    """Sharded attention under a `BlockCausalMask`: Ulysses in, the model's kernel once per piece, Ulysses out; or,
    with a ring, the ring loop with the pieces of each key block. Returns `[B, L, H, D]` in the order of `query`."""
    local = query.shape[1] - call.replicated
    placed = PlacedMask(mask, *call.positions(local))
    if len(placed.replicated) + sum(map(len, placed.chunks)) != mask.length:
        raise ValueError(f"{call.who}: a block-causal mask over {mask.length} tokens for a sequence of another length.")
    if call.ring is not None and call.ring.size > 1:
        return ring_attention(
            query, key, value, call.ulysses, call.ring, scale=scale, replicated=call.replicated,
            replicated_front=call.replicated_front, seq_lens=call.seq_lens, dense=placed,
        )  # fmt: skip
    group = call.ulysses
    ex = ulysses_in(
        query, key, value, group,
        replicated=call.replicated, replicated_front=call.replicated_front, seq_lens=call.seq_lens,
    )  # fmt: skip
    k, v, _ = ex.keys()  # the replicated block's keys, then every rank's: the same order as the rows of ex.q
    k, v = kv_for_queries(k, ex.split, group.rank), kv_for_queries(v, ex.split, group.rank)
    positions = placed.order(range(group.size))
    outs = []
    for r0, r1, n, piece in mask.pieces(positions, positions, query.device):
        # n > 0: every query is itself among the keys, below its limit
        piece = piece[:, None, None, :] if piece is not None and piece.dim() == 2 else piece
        outs.append(kernel(ex.q[:, r0:r1], k[:, :n], v[:, :n], piece))
    return ulysses_out(torch.cat(outs, dim=1) if len(outs) > 1 else outs[0], ex, group)
