"""Unified sequence parallelism: ring attention across Ulysses groups. No diffusers imports.

Written as "Ulysses in, ring loop, Ulysses out": the two exchanges are `ulysses.py`'s, and only the loop is here.

Notation: R ring ranks times U Ulysses ranks. The global sequence is ring-major: rank (r, u) holds the sharded tokens
of global chunk `r * U + u`, so a Ulysses group (one r, U contiguous ranks, one machine) holds ring block r, and a ring
group (one u, R ranks) holds one head slice of every block.

1. One all-to-all inside the Ulysses group trades "my tokens, all heads" for "block r's tokens, my heads".
2. Each rank keeps its query block. Key/value blocks, with their key-mask slice, pass around the ring group by
   point-to-point sends: R - 1 shifts, the next block in flight while the current one is attended.
3. Partial results merge exactly by log-sum-exp (online softmax) in float32.
4. One all-to-all inside the Ulysses group takes the heads back.

Replicated tokens (a replicated Q/K/V block, a K/V prefix) are identical on every rank. They are attended in the local
step only and never travel the ring: a copy on every ring rank would be counted R times in the softmax.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from .comm import copy_
from .compat import funcol
from .groups import Group
from .lse import attention_lse, merge_lse
from .ulysses import kv_for_queries, ulysses_in, ulysses_out


@dataclass
class DenseMask:
    """A mask over the whole sequence, `[B, 1 or H, S or 1, S]` (boolean or additive), and where each token lies in
    it: `replicated`, the positions of the replicated block; `chunks[c]`, those of sequence chunk c's sharded tokens
    in their local order (`ShardedCall.positions`)."""

    mask: torch.Tensor
    replicated: list[int]
    chunks: list[list[int]]

    def order(self, chunks, device) -> torch.Tensor:
        """Positions of the replicated block, then of the given chunks: the rows Ulysses in gives a rank."""
        return torch.tensor(self.replicated + [p for c in chunks for p in self.chunks[c]], device=device)

    def heads(self, h0: int, h1: int) -> torch.Tensor:
        return self.mask[:, h0:h1] if self.mask.shape[1] > 1 else self.mask

    def bias(self, h0: int, h1: int, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """The float32 additive bias of these rows and columns, `[B, 1 or h, len(rows), len(cols)]`."""
        mask = self.heads(h0, h1)
        block = mask[:, :, rows[:, None], cols[None, :]] if mask.shape[-2] > 1 else mask[..., cols]
        return key_bias(block, block.dtype == torch.bool)

    def attend(self, q, k, v, rows, cols, heads, scale) -> tuple[torch.Tensor, torch.Tensor]:
        """`attention_lse` of queries at `rows` and one key block at `cols` under this mask (the ring's one call for
        a whole-sequence mask; `token_mask.PlacedMask` has the same one)."""
        return attention_lse(q, k, v, self.bias(*heads, rows, cols), scale)


def kv_block(k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The buffer that travels the ring: `[B, S_BLOCK, 2 * hkv (+1), D]`, K heads, V heads, and the key mask in the
    first element of one extra slot (one send per shift instead of two or three)."""
    B, S_BLOCK, hkv, D = k.shape
    block = k.new_empty(B, S_BLOCK, 2 * hkv + (mask is not None), D)
    copy_(block[:, :, :hkv], k)
    copy_(block[:, :, hkv : 2 * hkv], v)
    if mask is not None:
        block[:, :, -1, 0].copy_(mask)  # bool becomes 1.0/0.0, decoded by `> 0.5`
    return block


def shift_block(block: torch.Tensor, recv_rows: int, ring: Group) -> tuple[torch.Tensor, list]:
    """Post the ring shift: send `block` to the next ring rank, receive the previous rank's `[B, recv_rows, ...]`.

    Returns the receive buffer and the works to wait on. The block sizes of both neighbours are known from
    `seq_lens` on every rank, so no size is exchanged.
    """
    B, _, SLOTS, D = block.shape
    R, r = ring.size, ring.rank
    nxt, prev = (r + 1) % R, (r - 1) % R
    if torch.compiler.is_compiling():
        # Dynamo cannot trace batch_isend_irecv (Work objects, host-side peers). An all-to-all whose only non-empty
        # chunks go to the next rank and come from the previous one moves the same bytes, and the functional form
        # lets Inductor place its wait. (`funcol.permute_tensor` assumes equal sizes on both sides.)
        sizes_in, sizes_out = [0] * R, [0] * R
        sizes_in[nxt], sizes_out[prev] = block.numel(), B * recv_rows * SLOTS * D
        recv = funcol.all_to_all_single(block.view(-1), sizes_out, sizes_in, ring.group)
        return recv.view(B, recv_rows, SLOTS, D), []
    recv = block.new_empty(B, recv_rows, SLOTS, D)
    group = ring.group if ring.group is not None else dist.group.WORLD
    ops = [
        dist.P2POp(dist.isend, block, dist.get_global_rank(group, nxt), ring.group),
        dist.P2POp(dist.irecv, recv, dist.get_global_rank(group, prev), ring.group),
    ]
    return recv, dist.batch_isend_irecv(ops)


def key_bias(mask: torch.Tensor, boolean: bool) -> torch.Tensor:
    """A key mask (bool, or its 1.0/0.0 encoding in a packed slot, or additive) as an additive float32 bias."""
    if boolean:
        keep = mask if mask.dtype == torch.bool else mask > 0.5
        return torch.zeros(keep.shape, device=keep.device).masked_fill(~keep, float("-inf"))
    return mask.float()


def ring_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    ulysses: Group,
    ring: Group,
    *,
    replicated: int = 0,
    replicated_front: bool = True,
    kv_prefix: tuple[torch.Tensor, torch.Tensor] | None = None,
    seq_lens: tuple[int, ...] | None = None,
    key_mask: torch.Tensor | None = None,
    scale: float | None = None,
    dense: DenseMask | None = None,
) -> torch.Tensor:
    """Attention over a sequence sharded across a ring of Ulysses groups: two all-to-alls inside the Ulysses group
    and R - 1 point-to-point shifts of key/value blocks around the ring group. Never an all-gather.

    Args:
        query, key, value (`torch.Tensor`):
            This rank's `[B, L, H, D]` tensors (`Hkv` may divide `Hq`). `L` = this rank's sharded tokens +
            `replicated`.
        ulysses (`Group`): the U ranks of one ring block (contiguous ranks, inside one machine).
        ring (`Group`): the R ranks holding the same heads of different blocks. This rank holds global chunk
            `ring.rank * U + ulysses.rank`.
        replicated (`int`, defaults to 0):
            Tokens at the front (`replicated_front`) or back of `L` that every rank holds identically. Attended once,
            in the local ring step; never sent.
        kv_prefix (`tuple[torch.Tensor, torch.Tensor]`, *optional*):
            Replicated `[B, T, Hkv, D]` keys and values added to the sequence. Attended once; never sent.
        seq_lens (`tuple[int, ...]`, *optional*):
            The sharded token count of every global chunk, `R * U` of them in ring-major order, when they differ.
            Every rank derives all block sizes from it: no size exchange and no padding. `None` means all ranks
            hold `L - replicated`.
        key_mask (`torch.Tensor`, *optional*):
            `[B, L]`, boolean or additive, over this rank's keys in the order of `key`. Its sharded part travels in
            the Ulysses all-to-all, then with its block around the ring.
        scale (`float`, *optional*): the softmax scale; `D ** -0.5` by default.
        dense (`DenseMask`, *optional*): a dense mask over the whole sequence instead of `key_mask`: each step
            attends under its rows (this rank's queries) and columns (the block's keys), sliced locally. Or a
            `token_mask.PlacedMask`, which forms its pieces from per-token metadata (`attend`, the same interface).

    Returns:
        `[B, L, H, D]`, rows in the order of `query`.
    """
    B, L, Hq, D = query.shape
    R, U = ring.size, ulysses.size
    chunk = ring.rank * U + ulysses.rank
    lens = tuple(seq_lens) if seq_lens is not None else (L - replicated,) * (R * U)
    if len(lens) != R * U or lens[chunk] != L - replicated:
        raise ValueError(
            f"seq_lens must give ring({R}) * ulysses({U}) = {R * U} chunk sizes, with this rank's chunk {chunk} "
            f"holding L({L}) - replicated({replicated}) tokens; got {seq_lens}."
        )
    scale = D**-0.5 if scale is None else scale
    group_lens = lens[ring.rank * U : (ring.rank + 1) * U]  # the chunks of this rank's ring block
    block_lens = tuple(sum(lens[j * U : (j + 1) * U]) for j in range(R))
    boolean = key_mask is not None and key_mask.dtype == torch.bool

    # 1. Ulysses in: block r's tokens, this rank's heads; the replicated tokens' heads sliced locally, queried in
    # every step and attended as keys in the local one only.
    ex = ulysses_in(
        query, key, value, ulysses,
        replicated=replicated, replicated_front=replicated_front, kv_prefix=kv_prefix, seq_lens=group_lens,
        key_mask=key_mask,
    )  # fmt: skip
    split, u, q = ex.split, ulysses.rank, ex.q
    hkv = ex.k.shape[2]
    if dense is not None:
        h0, h1 = split.q[u]
        rows = dense.order(range(ring.rank * U, (ring.rank + 1) * U), query.device)
        block_cols = lambda j: dense.order(range(j * U, (j + 1) * U), query.device)[len(dense.replicated) :]  # noqa: E731
    block = kv_block(ex.k, ex.v, ex.mask)

    # 2-3. The ring: attend the block held, with the next one already in flight; merge by log-sum-exp.
    out = lse = None
    for step in range(R):
        source = (ring.rank - step) % R  # the ring rank whose block this is
        if step + 1 < R:
            incoming, works = shift_block(block, block_lens[(source - 1) % R], ring)
        k_b, v_b = block[:, :, :hkv], block[:, :, hkv : 2 * hkv]
        bias = key_bias(block[:, :, -1, 0], boolean) if key_mask is not None else None
        if step == 0 and ex.k_extra is not None:
            k_b, v_b = torch.cat([ex.k_extra, k_b], dim=1), torch.cat([ex.v_extra, v_b], dim=1)
            if bias is not None:
                bias = torch.cat([key_bias(ex.mask_extra, boolean), bias], dim=1)
        if dense is not None:  # the columns of this block's keys (and of the replicated ones, attended at step 0)
            cols = block_cols(source)
            if step == 0 and ex.k_extra is not None:
                cols = torch.cat([torch.tensor(dense.replicated, device=cols.device), cols])
        k_b, v_b = kv_for_queries(k_b, split, u, every_head=True), kv_for_queries(v_b, split, u, every_head=True)
        if dense is not None:
            block_out, block_lse = dense.attend(q, k_b, v_b, rows, cols, (h0, h1), scale)
        else:
            block_out, block_lse = attention_lse(q, k_b, v_b, bias, scale)
        out, lse = (block_out, block_lse) if out is None else merge_lse(out, lse, block_out, block_lse)
        if step + 1 < R:
            for work in works:
                work.wait()
            block = incoming

    # (B, h, replicated + S_BLOCK, D) -transpose-> (B, replicated + S_BLOCK, h, D), cast in the same copy
    out = query.new_empty(B, out.shape[2], out.shape[1], D).copy_(out.transpose(1, 2))
    # 4. Ulysses out; the replicated rows ride to every destination in the same collective.
    return ulysses_out(out, ex, ulysses)
