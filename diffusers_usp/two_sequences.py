"""Cross-attention between two sharded sequences: the queries of one sequence attend the keys and values of another,
both split across the same ranks, of different lengths. No diffusers imports.

LTX-2's audio-to-video attention is the example: video queries (`Sq` tokens, `Sq / P` per rank) attend audio keys and
values (`Sk` tokens, `Sk / P` per rank), and video-to-audio the reverse. Neither side is whole on any rank, so this is
neither a sharded self-attention (one sequence) nor a cross-attention to replicated K/V (no collective).

1. One all-to-all in. Rank r sends destination j its local queries of j's heads, then its local keys and values of
   j's heads, in one flat chunk (`[B, Sq_r, q_max, D]` then `[B, Sk_r, 2 * kv_max, D]`). It receives every rank's
   chunk and holds both whole sequences for its heads: `[B, Sq, h, D]` and `[B, Sk, hkv, D]`.
2. The model's kernel on them: softmax is per query row over all keys, so this is exact.
3. One all-to-all out, the same as a sharded self-attention's (`comm.pack_out`): `[B, Sq_r, H, D]`.

Uneven lengths: every rank's query and key counts (`q_lens`, `kv_lens`) are known from shapes on every rank, so the
chunks are sized without any exchange of sizes.

With a ring of Ulysses groups, each group holds one ring block of both sequences (ring-major, as the split gives it),
the exchange above runs inside the group, and the other sequence's key/value blocks travel the ring group point to
point (`ring.shift_block`), merged by log-sum-exp. The query block never moves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from .comm import HeadSplit, copy_, exchange_out, head_split, pack_out, unpack_heads
from .groups import Group
from .lse import attention_lse, merge_lse
from .ring import kv_block, shift_block
from .ulysses import Kernel, kv_for_queries

if TYPE_CHECKING:
    from .sequence import SequenceState


def _pack(x: torch.Tensor, send: torch.Tensor, ranges: tuple[tuple[int, int], ...], even: bool) -> None:
    """Write each destination's heads of `x` (`[B, L, H, D]`) into `send` (`[P, B, L, slots, D]`, first slots)."""
    B, L, _, D = x.shape
    P, slots = send.shape[0], ranges[0][1] - ranges[0][0]
    if even:
        # (B, L, H, D) -view-> (B, L, P, H/P, D) -permute-> (P, B, L, H/P, D)
        copy_(send[..., :slots, :], x.view(B, L, P, slots, D).permute(2, 0, 1, 3, 4))
        return
    for j, (h0, h1) in enumerate(ranges):  # uneven heads: one copy per destination, padding slots unread
        copy_(send[j, :, :, : h1 - h0], x[:, :, h0:h1])


def exchange_two(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    group: Group,
    q_lens: tuple[int, ...],
    kv_lens: tuple[int, ...],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, HeadSplit]:
    """The one all-to-all in: this rank's `[B, Sq_r, H, D]` queries and `[B, Sk_r, Hkv, D]` keys/values, to every
    rank's queries and keys/values of this rank's heads, `[B, Sq, h, D]` and `[B, Sk, hkv, D]` (rank order).

    Args:
        q_lens, kv_lens (`tuple[int, ...]`): every rank's query and key/value token counts, in rank order.
    """
    B, Lq, Hq, D = query.shape
    Lk, Hkv = key.shape[1], key.shape[2]
    P, rank = group.size, group.rank
    split = head_split(Hq, Hkv, P)
    qm, km = split.q_max, split.kv_max
    n_q, n_kv = B * Lq * qm * D, B * Lk * 2 * km * D  # elements of one destination's chunk: queries, keys/values
    send = query.new_empty(P, n_q + n_kv)
    _pack(query, send[:, :n_q].view(P, B, Lq, qm, D), split.q, split.even)
    kv = send[:, n_q:].view(P, B, Lk, 2 * km, D)
    _pack(key, kv[..., :km, :], split.kv, split.even)
    _pack(value, kv[..., km:, :], split.kv, split.even)
    sizes = [B * (q_lens[j] * qm + kv_lens[j] * 2 * km) * D for j in range(P)]  # what source j sends this rank
    recv = send.new_empty(sum(sizes))
    # Both split lists, although the input's are even: the traced collective (torch.compile) requires them together.
    dist.all_to_all_single(recv, send.view(-1), sizes, [n_q + n_kv] * P, group=group.group)
    q_parts, kv_parts = [], []
    for chunk, nq, nk in zip(recv.split(sizes), q_lens, kv_lens):
        q_parts.append(chunk[: B * nq * qm * D].view(B, nq, qm, D))
        kv_parts.append(chunk[B * nq * qm * D :].view(B, nk, 2 * km, D))
    q_full, kv_full = torch.cat(q_parts, dim=1), torch.cat(kv_parts, dim=1)  # [B, Sq, qm, D], [B, Sk, 2km, D]
    nq_heads = split.q[rank][1] - split.q[rank][0]
    nkv_heads = split.kv[rank][1] - split.kv[rank][0]
    return q_full[..., :nq_heads, :], kv_full[..., :nkv_heads, :], kv_full[..., km : km + nkv_heads, :], split


def _return(out: torch.Tensor, split: HeadSplit, q_lens: tuple[int, ...], group: Group) -> torch.Tensor:
    """The one all-to-all out: `[B, Sq, h, D]` (rank order) back to this rank's `[B, Sq_r, H, D]`."""
    send = pack_out(out, split, q_lens)
    return unpack_heads(exchange_out(send, group, q_lens, 0, out.shape[0], out.shape[-1]), split)


def two_sequence_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    kernel: Kernel,
    ulysses: Group,
    ring: Group | None,
    q_lens: tuple[int, ...],
    kv_lens: tuple[int, ...],
    scale: float | None = None,
) -> torch.Tensor:
    """Queries of one sharded sequence attending the keys/values of another sharded sequence.

    Args:
        query (`torch.Tensor`): this rank's `[B, Sq_r, H, D]` queries.
        key, value (`torch.Tensor`): this rank's `[B, Sk_r, Hkv, D]` keys and values (`Hkv` may divide `H`).
        kernel (`Kernel`): the model's local attention (without a ring; the ring merges with its own LSE kernel).
        ulysses (`Group`): this rank's Ulysses group; ring (`Group`, *optional*): its ring group, or `None`.
        q_lens, kv_lens (`tuple[int, ...]`): the query and key/value token counts of every rank of the sequence
            group (ring-major: ring block r is chunks `r * U` to `r * U + U - 1`).
        scale (`float`, *optional*): the softmax scale of the ring's kernel; `D ** -0.5` by default.

    Returns:
        `[B, Sq_r, H, D]`, rows in the order of `query`.
    """
    R, U = (ring.size if ring is not None else 1), ulysses.size
    r = ring.rank if ring is not None else 0
    group_q, group_kv = q_lens[r * U : (r + 1) * U], kv_lens[r * U : (r + 1) * U]
    if U > 1:
        q, k, v, split = exchange_two(query, key, value, ulysses, group_q, group_kv)
    else:
        q, k, v, split = query, key, value, head_split(query.shape[2], key.shape[2], 1)
    if R == 1:
        out = kernel(q, kv_for_queries(k, split, ulysses.rank), kv_for_queries(v, split, ulysses.rank), None)
    else:
        out = _ring(q, k, v, split, ulysses.rank, ring, kv_lens, U, scale)
    return _return(out, split, group_q, ulysses) if U > 1 else out


def _ring(q, k, v, split: HeadSplit, u: int, ring: Group, kv_lens, U: int, scale: float | None) -> torch.Tensor:
    """The ring loop over the other sequence's key/value blocks: `[B, Sq_BLOCK, h, D]` queries stay, blocks travel."""
    R, D = ring.size, q.shape[-1]
    scale = D**-0.5 if scale is None else scale
    block_lens = tuple(sum(kv_lens[j * U : (j + 1) * U]) for j in range(R))
    hkv = k.shape[2]
    block = kv_block(k, v, None)
    out = lse = None
    for step in range(R):
        source = (ring.rank - step) % R  # the ring rank whose key/value block this is
        if step + 1 < R:
            incoming, works = shift_block(block, block_lens[(source - 1) % R], ring)
        k_b = kv_for_queries(block[:, :, :hkv], split, u, every_head=True)
        v_b = kv_for_queries(block[:, :, hkv : 2 * hkv], split, u, every_head=True)
        block_out, block_lse = attention_lse(q, k_b, v_b, None, scale)
        out, lse = (block_out, block_lse) if out is None else merge_lse(out, lse, block_out, block_lse)
        if step + 1 < R:
            for work in works:
                work.wait()
            block = incoming
    # (B, h, Sq_BLOCK, D) -transpose-> (B, Sq_BLOCK, h, D), cast in the same copy
    return q.new_empty(q.shape[0], out.shape[2], out.shape[1], D).copy_(out.transpose(1, 2))


def attend_two(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    kernel: Kernel,
    state: SequenceState,
    who: str,
    *,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> torch.Tensor:
    """The entry for a module whose queries and keys/values are two different sharded sequences (a plan's
    `two_sequences`): checks the call, then `two_sequence_attention` on the forward's groups.

    Each side's sequence is found by the tokens this rank holds of it (`SequenceState.sizes`), which gives every
    rank's count of it, also when P does not divide its length.
    """
    if attn_mask is not None or is_causal or dropout_p:
        raise NotImplementedError(
            f"{who}: a cross-attention between two sharded sequences with a mask, causal attention or dropout is not "
            "supported (the model's forward passes none of them in inference)."
        )
    group = state.group
    q_lens = state.sizes(query.shape[1]) or (query.shape[1],) * group.size
    kv_lens = state.sizes(key.shape[1]) or (key.shape[1],) * group.size
    ulysses = state.ulysses if state.ulysses is not None else group
    return two_sequence_attention(query, key, value, kernel, ulysses, state.ring, q_lens, kv_lens, scale)
