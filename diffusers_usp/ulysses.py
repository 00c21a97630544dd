"""The Ulysses exchange, written once: `ulysses_in` trades "my tokens, all heads" for "all tokens, my heads",
`ulysses_out` trades back. No diffusers imports.

Notation: P ranks, this is rank r. Sharded tokens arrive as `[B, S/P, H, D]` and are attended as `[B, S, H/P, D]`.
Plain Ulysses runs a kernel between the two (`ulysses_attention`); the ring (`ring.py`) runs its loop over key/value
blocks between the same two calls. Replicated tokens (a joint block every rank holds, a K/V prefix), key masks, GQA
and uneven splits are all handled here, in one place:

- replicated tokens are never sent: each rank slices its own heads of them locally, and their output rows ride in
  the output all-to-all to every destination;
- a key-padding mask travels in one extra slot of the input all-to-all;
- uneven sequences use uneven split sizes that every rank derives from shapes (no padding, no size exchange).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .comm import (
    HeadSplit,
    copy_,
    exchange_out,
    exchange_qkv,
    head_split,
    pack_out,
    pack_qkv,
    unpack_heads,
    unpack_qkv,
)
from .groups import Group

# Head chunks per attention while a CUDA graph is being captured: the exchange of chunk c + 1 runs on NCCL's stream
# while chunk c is attended, and chunk c's output returns while chunk c + 1 is attended, so only the first chunk's
# input exchange and the last chunk's output exchange stay exposed. Only under capture: each chunk costs two more
# collective launches on the host, which a replayed graph does not pay; and on eager steps long enough to be
# GPU-bound (Wan 480p) chunking measured no gain. Measured on 2 H200s (benchmarks/NOTES.md, 5a and 5c).
CAPTURE_HEAD_CHUNKS = 2

# A kernel takes BSHD query, key, value (key/value heads may be fewer: GQA) and an attention mask or None, and returns
# the BSHD output.
Kernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def _head_chunks(query: torch.Tensor) -> int:
    if query.device.type != "cuda" or torch.compiler.is_compiling():
        return 1  # Inductor schedules its own collectives; and gloo on CPU keeps the 2-collective schedule
    return CAPTURE_HEAD_CHUNKS if torch.cuda.is_current_stream_capturing() else 1


def kv_for_queries(x: torch.Tensor, split: HeadSplit, rank: int, every_head: bool = False) -> torch.Tensor:
    """This rank's `[B, S, hkv, D]` key or value heads, arranged for its query heads (GQA).

    Where the local grouping is not uniform (uneven heads), every query head gets its own K/V head. With
    `every_head`, always one K/V head per query head (for kernels that take no GQA: the ring's LSE kernels);
    otherwise a uniform grouping is left to the kernel's own GQA.
    """
    index = split.kv_index(rank)
    if index is not None:
        return x.index_select(2, torch.tensor(index, device=x.device))
    return x.repeat_interleave(split.group_size, dim=2) if every_head and split.group_size > 1 else x


@dataclass
class Exchanged:
    """What rank r holds after `ulysses_in`: every token of the sequence, its own heads.

    Args:
        q (`torch.Tensor`): `[B, replicated + S, h, D]`: the replicated query rows first, then every rank's sharded
            tokens in rank order.
        k, v (`torch.Tensor`): `[B, S, hkv, D]`: the sharded keys and values of every rank.
        mask (`torch.Tensor`, *optional*): `[B, S]`, the key mask of those keys, in the input mask's dtype.
        k_extra, v_extra (`torch.Tensor`, *optional*): `[B, T + replicated, hkv, D]`: the K/V prefix, then the
            replicated block's keys and values. Never sent; a ring attends them once, in its local step.
        mask_extra (`torch.Tensor`, *optional*): `[B, T + replicated]`, their key mask (prefix keys always kept).
        split (`HeadSplit`), lens (`tuple[int, ...]`): the head split and every rank's sharded token count.
        replicated (`int`), replicated_front (`bool`): the replicated block and where it sits in the input.
    """

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    mask: torch.Tensor | None
    k_extra: torch.Tensor | None
    v_extra: torch.Tensor | None
    mask_extra: torch.Tensor | None
    split: HeadSplit
    lens: tuple[int, ...]
    replicated: int
    replicated_front: bool

    def keys(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Every key, value and key-mask entry this rank attends: `[B, T + replicated + S, hkv, D]`, extras first."""
        if self.k_extra is None:
            return self.k, self.v, self.mask
        k, v = torch.cat([self.k_extra, self.k], dim=1), torch.cat([self.v_extra, self.v], dim=1)
        mask = torch.cat([self.mask_extra, self.mask], dim=1) if self.mask is not None else None
        return k, v, mask


def ulysses_in(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    group: Group,
    *,
    replicated: int = 0,
    replicated_front: bool = True,
    kv_prefix: tuple[torch.Tensor, torch.Tensor] | None = None,
    seq_lens: tuple[int, ...] | None = None,
    key_mask: torch.Tensor | None = None,
) -> Exchanged:
    """One all-to-all in (none for a group of one): this rank's `[B, L, H, D]` tensors to `Exchanged`.

    Args:
        query, key, value (`torch.Tensor`): `[B, L, H, D]` (`Hkv` may divide `Hq`), `L = S_LOCAL + replicated`.
        group (`Group`): the ranks sharing the sequence.
        replicated (`int`, defaults to 0): tokens at the front (`replicated_front`) or back of `L` that every rank
            holds identically (joint text whose count P does not divide).
        kv_prefix (`tuple[torch.Tensor, torch.Tensor]`, *optional*): replicated `[B, T, Hkv, D]` keys and values
            added to the sequence (IP-Adapter image-prompt tokens).
        seq_lens (`tuple[int, ...]`, *optional*): every rank's sharded token count when they differ.
        key_mask (`torch.Tensor`, *optional*): `[B, L]`, boolean or additive, over this rank's keys in `key`'s order;
            or `[B, T + L]` with a `kv_prefix` of `T` keys, over the prefix first (else prefix keys are all kept).
    """
    B, L, Hq, D = query.shape
    P, rank = group.size, group.rank
    prefix_mask = None
    if kv_prefix is not None and key_mask is not None and key_mask.shape[1] != L:  # [B, T + L]: the prefix's first
        prefix_mask, key_mask = key_mask[:, : kv_prefix[0].shape[1]], key_mask[:, kv_prefix[0].shape[1] :]
    split = head_split(Hq, key.shape[2], P)
    (q0, q1), (kv0, kv1) = split.q[rank], split.kv[rank]
    sharded = slice(replicated, L) if replicated_front else slice(0, L - replicated)
    rep = slice(0, replicated) if replicated_front else slice(L - replicated, L)
    lens = seq_lens if seq_lens is not None else (L - replicated,) * P
    uneven = len(set(lens)) > 1

    if P > 1:
        # NCCL runs each collective on its own stream, ordered after the work queued before it: no stream of ours is
        # needed for that, and the replicated parts below are views, with nothing to overlap.
        mask_sent = key_mask[:, sharded].to(query.dtype) if key_mask is not None else None
        send = pack_qkv(query[:, sharded], key[:, sharded], value[:, sharded], split, mask_sent)
        q, k, v, mask = unpack_qkv(exchange_qkv(send, group, lens if uneven else None), split, rank)
        if mask is not None:  # sent in Q's dtype: booleans as 1.0 / 0.0
            mask = mask > 0.5 if key_mask.dtype == torch.bool else mask.to(key_mask.dtype)
    else:
        q, k, v = query[:, sharded], key[:, sharded], value[:, sharded]
        mask = key_mask[:, sharded] if key_mask is not None else None

    # This rank's heads of the replicated tokens need no communication.
    k_extra, v_extra, m_extra = [], [], []
    if kv_prefix is not None:
        k_extra.append(kv_prefix[0][:, :, kv0:kv1])
        v_extra.append(kv_prefix[1][:, :, kv0:kv1])
        if prefix_mask is not None:
            m_extra.append(prefix_mask)
        elif key_mask is not None:  # a mask over the sharded keys only: prefix keys are always attended
            keep = torch.ones if key_mask.dtype == torch.bool else torch.zeros
            m_extra.append(keep(B, kv_prefix[0].shape[1], dtype=key_mask.dtype, device=key_mask.device))
    if replicated:
        q = torch.cat([query[:, rep, q0:q1], q], dim=1)
        k_extra.append(key[:, rep, kv0:kv1])
        v_extra.append(value[:, rep, kv0:kv1])
        if key_mask is not None:
            m_extra.append(key_mask[:, rep])
    cat = lambda parts: (parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)) if parts else None  # noqa: E731
    return Exchanged(q, k, v, mask, cat(k_extra), cat(v_extra), cat(m_extra), split, lens, replicated, replicated_front)


def ulysses_out(out: torch.Tensor, ex: Exchanged, group: Group) -> torch.Tensor:
    """One all-to-all out (none for a group of one): `[B, replicated + S, h, D]`, rows in the order of `ex.q`, back
    to `[B, L, H, D]` in the order of the input query. The replicated rows reach every rank in the same collective."""
    if group.size > 1:
        send = pack_out(out, ex.split, ex.lens, ex.replicated, not ex.replicated_front)
        recv = exchange_out(send, group, ex.lens, ex.replicated, out.shape[0], out.shape[-1])
        return unpack_heads(recv, ex.split)
    if ex.replicated and not ex.replicated_front:
        return torch.cat([out[:, ex.replicated :], out[:, : ex.replicated]], dim=1)
    return out


def ulysses_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    kernel: Kernel,
    group: Group,
    *,
    replicated: int = 0,
    replicated_front: bool = True,
    kv_prefix: tuple[torch.Tensor, torch.Tensor] | None = None,
    seq_lens: tuple[int, ...] | None = None,
    key_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention over a sequence sharded across `group`: `ulysses_in`, the kernel, `ulysses_out` (arguments as in
    `ulysses_in`). Exactly one all-to-all in and one out. Returns `[B, L, H, D]`, rows in the order of `query`."""
    split = head_split(query.shape[2], key.shape[2], group.size)
    if seq_lens is not None and len(set(seq_lens)) == 1:
        seq_lens = None
    if not replicated and kv_prefix is None and key_mask is None and seq_lens is None and split.even:
        return _ulysses_even(query, key, value, kernel, group, split, _head_chunks(query))
    ex = ulysses_in(
        query, key, value, group,
        replicated=replicated, replicated_front=replicated_front, kv_prefix=kv_prefix, seq_lens=seq_lens,
        key_mask=key_mask,
    )  # fmt: skip
    k, v, mask = ex.keys()
    k, v = kv_for_queries(k, split, group.rank), kv_for_queries(v, split, group.rank)
    out = kernel(ex.q, k, v, mask[:, None, None, :] if mask is not None else None)  # [B, replicated + S, h, D]
    return ulysses_out(out, ex, group)


def _ulysses_even(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    kernel: Kernel,
    group: Group,
    split: HeadSplit,
    chunks: int = 1,
) -> torch.Tensor:
    """`ulysses_attention` for the common case (every rank holds `S/P` tokens and `H/P` heads; no replicated block,
    prefix or mask), with as few host operations as the packing allows: an eager step is bound by host time.

    With `chunks > 1` each rank's heads are exchanged and attended in that many groups, on asynchronous collectives,
    so that the exchanges of one group overlap the attention of another (more collectives: for captured graphs).
    """
    B, S_LOCAL, _, D = query.shape
    P = group.size
    if split.q_max % chunks or split.kv_max % chunks:
        chunks = 1
    hq, hkv = split.q_max // chunks, split.kv_max // chunks  # heads of one chunk of one rank
    slots = hq + 2 * hkv
    # (B, S/P, H, D) -view-> (B, S/P, P, chunks, h, D): chunk c of rank j's heads at [:, :, j, c]
    q6, k6, v6 = (x.view(B, S_LOCAL, P, chunks, -1, D) for x in (query, key, value))
    exchanges = []
    for c in range(chunks):
        send = query.new_empty(P, B, S_LOCAL, slots, D)
        # (B, S/P, P, h, D) -permute-> (P, B, S/P, h, D), written into rank j's chunk of the send buffer
        copy_(send[..., :hq, :], q6[:, :, :, c].permute(2, 0, 1, 3, 4))
        copy_(send[..., hq : hq + hkv, :], k6[:, :, :, c].permute(2, 0, 1, 3, 4))
        copy_(send[..., hq + hkv :, :], v6[:, :, :, c].permute(2, 0, 1, 3, 4))
        recv = torch.empty_like(send)
        work = dist.all_to_all_single(recv, send, group=group.group, async_op=chunks > 1)
        exchanges.append((recv, work if chunks > 1 else None))  # traced, the synchronous call returns a tensor
    returns = []
    for recv, work in exchanges:
        if work is not None:
            work.wait()  # makes the current stream wait for NCCL's, with no host sync
        if B == 1:  # (P, 1, S/P, slots, D): the sources back to back are already (1, S, slots, D)
            full = recv.view(1, P * S_LOCAL, slots, D)
        else:  # (P, B, S/P, slots, D) -permute-> (B, P, S/P, slots, D) -view-> (B, S, slots, D)
            full = copy_(recv.new_empty(B, P, S_LOCAL, slots, D), recv.permute(1, 0, 2, 3, 4))
            full = full.view(B, P * S_LOCAL, slots, D)
        out = kernel(full[..., :hq, :], full[..., hq : hq + hkv, :], full[..., hq + hkv :, :], None)  # (B, S, h, D)
        send = out.new_empty(P, B, S_LOCAL, hq, D)
        # (B, S, h, D) -reshape-> (B, P, S/P, h, D) -permute-> (P, B, S/P, h, D): destination j gets its tokens
        copy_(send, out.reshape(B, P, S_LOCAL, hq, D).permute(1, 0, 2, 3, 4))
        back = torch.empty_like(send)
        work = dist.all_to_all_single(back, send, group=group.group, async_op=chunks > 1)
        returns.append((back, work if chunks > 1 else None))
    if chunks == 1:
        return unpack_heads(returns[0][0], split)
    heads = query.new_empty(B, S_LOCAL, P, chunks, hq, D)
    for c, (back, work) in enumerate(returns):
        work.wait()
        # (P, B, S/P, h, D) -permute-> (B, S/P, P, h, D): every source's heads of chunk c, in rank order
        copy_(heads[:, :, :, c], back.permute(1, 2, 0, 3, 4))
    return heads.view(B, S_LOCAL, P * chunks * hq, D)
