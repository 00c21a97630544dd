"""The USP attention core: Ulysses all-to-all around a local attention kernel. No diffusers imports.

Notation: P ranks, this is rank r. Sharded tokens arrive as `[B, S/P, H, D]` (sequence-local, all heads) and are
attended as `[B, S, H/P, D]` (all tokens, local heads). Three ways in:

- `ulysses_attention`: sharded Q/K/V, optionally with a replicated Q/K/V block (front or back) and a replicated K/V
  prefix. One all-to-all in, one out.
- `local_attention`: queries sharded, keys/values fully replicated (cross-attention). Softmax is per query row, so
  attending local queries to the full K/V is exact and needs no collective.
- `head_parallel_attention`: nothing sharded (every rank holds the full Q/K/V). Each rank attends its own heads and
  one all-gather completes them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist

from .comm import (
    HeadSplit,
    all_gather_heads,
    copy_,
    exchange_out,
    exchange_qkv,
    head_split,
    pack_out,
    pack_qkv,
    unpack_heads,
    unpack_qkv,
)
from .state import UlyssesGroup

# Head chunks per attention while a CUDA graph is being captured: the exchange of chunk c + 1 runs on NCCL's stream
# while chunk c is attended, and chunk c's output returns while chunk c + 1 is attended, so only the first chunk's
# input exchange and the last chunk's output exchange stay exposed. Only under capture: each chunk costs two more
# collective launches on the host, which a replayed graph does not pay; and on eager steps long enough to be
# GPU-bound (Wan 480p) chunking measured no gain. Measured on 2 H200s (benchmarks/NOTES.md, 5a and 5c).
CAPTURE_HEAD_CHUNKS = 2


def _head_chunks(query: torch.Tensor) -> int:
    if query.device.type != "cuda" or torch.compiler.is_compiling():
        return 1  # Inductor schedules its own collectives; and gloo on CPU keeps the 2-collective schedule
    return CAPTURE_HEAD_CHUNKS if torch.cuda.is_current_stream_capturing() else 1


# A kernel takes BSHD query, key, value (key/value heads may be fewer: GQA) and an attention mask or None, and returns
# the BSHD output.
Kernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def _expand_kv(k: torch.Tensor, v: torch.Tensor, index: tuple[int, ...] | None):
    """Give every local query head its own K/V head where the local GQA grouping is not uniform."""
    if index is None:
        return k, v
    idx = torch.tensor(index, device=k.device)
    return k.index_select(2, idx), v.index_select(2, idx)


def _gathered_key_mask(local: torch.Tensor, received: torch.Tensor, rep: slice, prefix: int) -> torch.Tensor:
    """The mask of every key the kernel sees, `[B, 1, 1, prefix + replicated + S]`, in the input mask's dtype."""
    received = received > 0.5 if local.dtype == torch.bool else received.to(local.dtype)
    keep = torch.ones if local.dtype == torch.bool else torch.zeros  # prefix keys are always attended
    parts = [keep(local.shape[0], prefix, dtype=local.dtype, device=local.device), local[:, rep], received]
    return torch.cat(parts, dim=1)[:, None, None, :]


def ulysses_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    kernel: Kernel,
    group: UlyssesGroup,
    *,
    replicated: int = 0,
    replicated_front: bool = True,
    kv_prefix: tuple[torch.Tensor, torch.Tensor] | None = None,
    seq_lens: tuple[int, ...] | None = None,
    key_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention over a sequence sharded across `group`, with exactly one all-to-all in and one out.

    Args:
        query, key, value (`torch.Tensor`):
            This rank's `[B, L, H, D]` tensors (`Hkv` may divide `Hq`). `L = S/P + replicated`.
        kernel (`Callable`): the local attention on `[B, S', h, D]` tensors.
        group (`UlyssesGroup`): the ranks sharing the sequence.
        replicated (`int`, defaults to 0):
            The number of tokens, at the front (`replicated_front`) or back of `L`, that every rank holds identically
            (for example text tokens whose count does not divide by P). They are never sent: each rank slices its
            heads of them locally, and their output rows ride in the output all-to-all.
        kv_prefix (`tuple[torch.Tensor, torch.Tensor]`, *optional*):
            Replicated `[B, T, Hkv, D]` key and value tokens that extra to the sequence (a reference image, a cache).
            Sliced locally by head, never sent.
        seq_lens (`tuple[int, ...]`, *optional*):
            Every rank's count of sharded tokens when they differ (a sequence P does not divide). The all-to-alls
            then use uneven splits, so no padding enters the softmax. `None` means all ranks hold `L - replicated`.
        key_mask (`torch.Tensor`, *optional*):
            `[B, L]`, boolean or additive, over this rank's keys in the order of `key` (a key-padding mask: the same
            for every query and head). Its sharded part travels in the input all-to-all.

    Returns:
        `[B, L, H, D]`, rows in the order of `query`.
    """
    B, L, Hq, D = query.shape
    P, rank = group.size, group.rank
    split = head_split(Hq, key.shape[2], P)
    (q0, q1), (kv0, kv1) = split.q[rank], split.kv[rank]
    sharded = slice(replicated, L) if replicated_front else slice(0, L - replicated)
    rep = slice(0, replicated) if replicated_front else slice(L - replicated, L)

    if seq_lens is not None and len(set(seq_lens)) == 1:
        seq_lens = None
    if not replicated and kv_prefix is None and key_mask is None and seq_lens is None and split.even:
        return _ulysses_even(query, key, value, kernel, group, split, _head_chunks(query))

    # NCCL runs each collective on its own stream, ordered after the work queued before it: no stream of ours is
    # needed for that, and the replicated parts below are views, with nothing to overlap.
    mask_sent = key_mask[:, sharded].to(query.dtype) if key_mask is not None else None
    send = pack_qkv(query[:, sharded], key[:, sharded], value[:, sharded], split, mask_sent)
    recv = exchange_qkv(send, group, seq_lens)
    # This rank's heads of the replicated tokens need no communication.
    k_parts, v_parts, q_parts = [], [], []
    if kv_prefix is not None:
        k_parts.append(kv_prefix[0][:, :, kv0:kv1])
        v_parts.append(kv_prefix[1][:, :, kv0:kv1])
    if replicated:
        q_parts.append(query[:, rep, q0:q1])
        k_parts.append(key[:, rep, kv0:kv1])
        v_parts.append(value[:, rep, kv0:kv1])

    q, k, v, mask = unpack_qkv(recv, split, rank)
    lens = seq_lens if seq_lens is not None else (L - replicated,) * P
    if q_parts or k_parts:
        q = torch.cat([*q_parts, q], dim=1)
        k = torch.cat([*k_parts, k], dim=1)
        v = torch.cat([*v_parts, v], dim=1)
    if key_mask is not None:
        mask = _gathered_key_mask(key_mask, mask, rep, kv_prefix[0].shape[1] if kv_prefix is not None else 0)
    out = kernel(q, *_expand_kv(k, v, split.kv_index(rank)), mask)  # [B, replicated + S, h, D]

    send = pack_out(out, split, lens, replicated, not replicated_front)
    recv = exchange_out(send, group, lens, replicated, B, D)
    return unpack_heads(recv, split)


def _ulysses_even(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    kernel: Kernel,
    group: UlyssesGroup,
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


def local_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, kernel: Kernel, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Sharded queries against fully replicated keys/values: exact with no communication."""
    return kernel(query, key, value, mask)


def head_parallel_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    kernel: Kernel,
    group: UlyssesGroup,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Every rank holds the whole sequence: attend this rank's heads, then one all-gather of the output.

    `mask` may carry a head dim (`[B, H, Lq, Lk]`); it is sliced to this rank's heads. Masks without one broadcast.
    """
    H = query.shape[2]
    split = head_split(H, key.shape[2], group.size)
    (q0, q1), (kv0, kv1) = split.q[group.rank], split.kv[group.rank]
    k, v = _expand_kv(key[:, :, kv0:kv1], value[:, :, kv0:kv1], split.kv_index(group.rank))
    if mask is not None and mask.ndim == 4 and mask.shape[1] == H and H > 1:
        mask = mask[:, q0:q1]
    out = kernel(query[:, :, q0:q1], k, v, mask)
    return all_gather_heads(out, split, group)
