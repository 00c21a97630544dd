"""Communication for Ulysses attention: head layouts, the packed all-to-alls, the head all-gather.

Nothing here imports diffusers. Every tensor is in the token-major `[B, S, H, D]` layout that diffusers' attention
dispatch uses, and every send buffer is grouped by destination rank along dim 0, which is what `all_to_all_single`
splits on.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .compat import all_gather_single
from .groups import Group


@dataclass(frozen=True)
class HeadSplit:
    """Which attention heads each rank computes.

    Query heads are dealt out as `torch.tensor_split` does (the first `Hq % P` ranks take one more). Each rank receives
    the key/value heads its query heads read, so with GQA a KV head may go to several ranks, and MQA (`Hkv == 1`)
    works at any P. All send chunks are padded to the largest rank's head count so that the all-to-all is even.

    Args:
        q (`tuple[tuple[int, int], ...]`): per rank, the `[start, end)` of its query heads.
        kv (`tuple[tuple[int, int], ...]`): per rank, the `[start, end)` of the key/value heads those queries read.
        group_size (`int`): query heads per key/value head (1 without GQA).
    """

    q: tuple[tuple[int, int], ...]
    kv: tuple[tuple[int, int], ...]
    group_size: int

    @property
    def q_max(self) -> int:
        return max(end - start for start, end in self.q)

    @property
    def kv_max(self) -> int:
        return max(end - start for start, end in self.kv)

    @property
    def even(self) -> bool:
        """True when the ranks' head ranges tile Q and KV exactly: one strided copy packs each tensor."""
        tiles = lambda ranges: all(  # noqa: E731
            start == i * (end - start) and end - start == ranges[0][1] - ranges[0][0]
            for i, (start, end) in enumerate(ranges)
        )
        return tiles(self.q) and tiles(self.kv)

    def kv_index(self, rank: int) -> tuple[int, ...] | None:
        """For each local query head, its local KV head; `None` when plain SDPA GQA grouping already matches."""
        (q0, q1), kv0 = self.q[rank], self.kv[rank][0]
        g = self.group_size
        if g == 1 or (q0 % g == 0 and (q1 - q0) % g == 0):
            return None
        return tuple(h // g - kv0 for h in range(q0, q1))


def head_split(num_q_heads: int, num_kv_heads: int, world_size: int) -> HeadSplit:
    """The `HeadSplit` of `num_q_heads` query and `num_kv_heads` key/value heads over `world_size` ranks: cached in
    eager calls; under `torch.compile`, traced once per graph into constants (Dynamo bypasses an `lru_cache` with a
    warning to the user, so the cache is not called there)."""
    if torch.compiler.is_compiling():
        return _head_split(num_q_heads, num_kv_heads, world_size)
    return _head_split_cached(num_q_heads, num_kv_heads, world_size)


def _head_split(num_q_heads: int, num_kv_heads: int, world_size: int) -> HeadSplit:
    if num_q_heads % num_kv_heads:
        raise ValueError(f"{num_q_heads} query heads cannot share {num_kv_heads} key/value heads evenly.")
    g = num_q_heads // num_kv_heads
    base, extra = num_q_heads // world_size, num_q_heads % world_size  # not divmod: Dynamo cannot trace it here
    q, kv, start = [], [], 0
    for rank in range(world_size):
        end = start + base + (rank < extra)
        q.append((start, end))
        kv.append((start // g, -(-end // g)) if end > start else (0, 0))
        start = end
    return HeadSplit(tuple(q), tuple(kv), g)


_head_split_cached = functools.lru_cache(maxsize=256)(_head_split)


def chunk_sizes(total: int, world_size: int) -> tuple[int, ...]:
    """How a sequence of `total` tokens is split over `world_size` ranks: `torch.tensor_split`'s sizes (the first
    `total % P` ranks take one more). Every rank computes the same tuple from shapes alone, with no communication."""
    base, extra = total // world_size, total % world_size  # not divmod: Dynamo cannot trace it here
    return tuple(base + (rank < extra) for rank in range(world_size))


def copy_(dst: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """`dst.copy_(src)` for two tensors of one dtype and shape, moving the widest element both layouts allow.

    Why: PyTorch's copy kernel moves one element per thread step when either side is strided, which is every packing
    copy here, and then spends more time on index arithmetic than on bytes (about half a flat copy's bandwidth on an
    H200). Each head's `D` values are contiguous on both sides, so they are viewed as 16-byte elements (8 bf16
    values) where their size, strides and offset divide: the same bytes, bit for bit (a copy does no arithmetic), in
    a fraction of the steps. `Tensor.view(dtype)` itself checks the strides and offset, so the host cost is two views.
    Under `torch.compile`, Inductor writes its own copy kernel, so the plain copy is traced.
    """
    row = src.shape[-1] * src.element_size()  # bytes of one contiguous run, if the last dim has stride 1
    wide = torch.complex128 if row % 16 == 0 else torch.int64 if row % 8 == 0 else None
    if wide is None or wide.itemsize <= src.element_size() or torch.compiler.is_compiling():
        return dst.copy_(src)
    try:
        dst_wide, src_wide = dst.view(wide), src.view(wide)
    except RuntimeError:  # a last dim of stride != 1, or a stride or offset that the wider element does not divide
        return dst.copy_(src)
    dst_wide.copy_(src_wide)
    return dst


def pack_qkv(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, split: HeadSplit, key_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Pack the local tokens of Q, K and V into one send buffer grouped by destination rank.

    Returns `[P, B, S_LOCAL, q_max + 2 * kv_max, D]`: chunk j holds rank j's query heads, then its K heads, then its V
    heads. On an even split this is one strided copy per tensor, the floor for a packed send. A key mask
    (`[B, S_LOCAL]`, in Q's dtype) rides along in one extra slot (its first element), so every rank gets the mask of
    all keys from the same collective: 1/(slots+1) more bytes instead of a second collective.
    """
    B, S_LOCAL, _, D = q.shape
    P, qm, km = len(split.q), split.q_max, split.kv_max
    send = q.new_empty(P, B, S_LOCAL, qm + 2 * km + (key_mask is not None), D)
    if key_mask is not None:
        send[..., -1, 0].copy_(key_mask.unsqueeze(0).expand(P, B, S_LOCAL))
        send, packed = send[..., :-1, :], send  # write Q/K/V through a view of the slots before the mask's
    if split.even:
        # (B, S/P, H, D) -view-> (B, S/P, P, H/P, D) -permute-> (P, B, S/P, H/P, D), written straight into the buffer
        copy_(send[..., :qm, :], q.view(B, S_LOCAL, P, qm, D).permute(2, 0, 1, 3, 4))
        copy_(send[..., qm : qm + km, :], k.view(B, S_LOCAL, P, km, D).permute(2, 0, 1, 3, 4))
        copy_(send[..., qm + km : qm + 2 * km, :], v.view(B, S_LOCAL, P, km, D).permute(2, 0, 1, 3, 4))
        return packed if key_mask is not None else send
    # Uneven heads or GQA with fewer KV heads than ranks: one copy per destination; the padding slots stay unread.
    for j, ((q0, q1), (kv0, kv1)) in enumerate(zip(split.q, split.kv)):
        copy_(send[j, :, :, : q1 - q0], q[:, :, q0:q1])
        copy_(send[j, :, :, qm : qm + kv1 - kv0], k[:, :, kv0:kv1])
        copy_(send[j, :, :, qm + km : qm + km + kv1 - kv0], v[:, :, kv0:kv1])
    return packed if key_mask is not None else send


def exchange_qkv(send: torch.Tensor, group: Group, seq_lens: tuple[int, ...] | None = None) -> torch.Tensor:
    """The all-to-all in: a `pack_qkv` buffer `[P, B, S_LOCAL, slots, D]` -> every source's tokens `[B, S, slots, D]`.

    `seq_lens` gives each rank's token count when they differ (uneven sequences): each source then sends a chunk of
    its own size, and the receive sizes follow from `seq_lens`, known on every rank without a size exchange.
    """
    P, B, S_LOCAL, SLOTS, D = send.shape
    if seq_lens is None:
        recv = torch.empty_like(send)
        dist.all_to_all_single(recv, send, group=group.group)
        if B == 1:  # (1, S/P, slots, D) per source, back to back, is already (1, S, slots, D)
            return recv.view(1, P * S_LOCAL, SLOTS, D)
        # (P, B, S/P, slots, D) -permute-> (B, P, S/P, slots, D), copied contiguous -view-> (B, S, slots, D)
        full = copy_(recv.new_empty(B, P, S_LOCAL, SLOTS, D), recv.permute(1, 0, 2, 3, 4))
        return full.view(B, P * S_LOCAL, SLOTS, D)
    sizes = [B * n * SLOTS * D for n in seq_lens]
    recv = send.new_empty(sum(sizes))
    # Both split lists, although the input's are even: the traced collective (torch.compile) requires them together.
    sent = [send[0].numel()] * P
    dist.all_to_all_single(recv, send.view(-1), output_split_sizes=sizes, input_split_sizes=sent, group=group.group)
    if B == 1:  # chunks [1, S_i, slots, D] back to back are already [1, S, slots, D]
        return recv.view(1, sum(seq_lens), SLOTS, D)
    return torch.cat([c.view(B, n, SLOTS, D) for c, n in zip(recv.split(sizes), seq_lens)], dim=1)


def unpack_qkv(
    full: torch.Tensor, split: HeadSplit, rank: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Views of this rank's Q, K and V heads, `[B, S, h, D]`, in an `exchange_qkv` result `[B, S, slots, D]`, and of
    the key mask `[B, S]` if one was packed."""
    qm, km = split.q_max, split.kv_max
    nq = split.q[rank][1] - split.q[rank][0]
    nkv = split.kv[rank][1] - split.kv[rank][0]
    key_mask = full[..., -1, 0] if full.shape[2] > qm + 2 * km else None
    return full[..., :nq, :], full[..., qm : qm + nkv, :], full[..., qm + km : qm + km + nkv, :], key_mask


def pack_out(
    out: torch.Tensor,
    split: HeadSplit,
    seq_lens: tuple[int, ...],
    replicated: int = 0,
    replicated_last: bool = False,
) -> torch.Tensor:
    """Pack this rank's attention output for the return all-to-all.

    `out` is `[B, replicated + S, h, D]`: the replicated rows first, then the sharded rows of each source rank in
    rank order (`seq_lens[i]` rows of rank i). Every destination gets its own rows plus all replicated rows (before
    them, or after them with `replicated_last`), so the replicated rows are completed by the same collective, with no
    all-gather. Returns `[P, B, replicated + S_LOCAL, q_max, D]` when all ranks hold the same count, else the
    destination chunks back to back, flat.
    """
    B, L, h, D = out.shape
    P = len(seq_lens)
    sharded, rep = out[:, replicated:], out[:, :replicated]
    if len(set(seq_lens)) == 1:
        S_LOCAL = seq_lens[0]
        send = out.new_empty(P, B, S_LOCAL + replicated, split.q_max, D)
        own = slice(0, S_LOCAL) if replicated_last else slice(replicated, None)
        # (B, S, h, D) -view-> (B, P, S/P, h, D) -permute-> (P, B, S/P, h, D)
        copy_(send[:, :, own, :h], sharded.reshape(B, P, S_LOCAL, h, D).permute(1, 0, 2, 3, 4))
        if replicated:
            rows = slice(S_LOCAL, None) if replicated_last else slice(0, replicated)
            copy_(send[:, :, rows, :h], rep.unsqueeze(0).expand(P, B, replicated, h, D))
        return send
    # Uneven: one copy per destination into its own slice of a flat buffer.
    send = out.new_empty(sum(B * (n + replicated) * split.q_max * D for n in seq_lens))
    start = offset = 0
    for n in seq_lens:
        chunk = send[offset : offset + B * (n + replicated) * split.q_max * D].view(B, n + replicated, split.q_max, D)
        own = slice(0, n) if replicated_last else slice(replicated, None)
        copy_(chunk[:, own, :h], sharded[:, start : start + n])
        if replicated:
            copy_(chunk[:, slice(n, None) if replicated_last else slice(0, replicated), :h], rep)
        start, offset = start + n, offset + chunk.numel()
    return send


def exchange_out(
    send: torch.Tensor, group: Group, seq_lens: tuple[int, ...], replicated: int, batch: int, head_dim: int
) -> torch.Tensor:
    """The all-to-all out: a `pack_out` buffer -> `[P, B, own + replicated rows, q_max, D]`, one block per source."""
    recv_rows = seq_lens[group.rank] + replicated
    if send.dim() == 5:
        recv = torch.empty_like(send)
        dist.all_to_all_single(recv, send, group=group.group)
        return recv
    row = send.numel() // sum(n + replicated for n in seq_lens)  # B * q_max * D elements per row
    recv = send.new_empty(group.size * recv_rows * row)
    sizes = [(n + replicated) * row for n in seq_lens]
    received = [recv_rows * row] * group.size  # given too: the traced collective requires both lists together
    dist.all_to_all_single(recv, send, output_split_sizes=received, input_split_sizes=sizes, group=group.group)
    return recv.view(group.size, batch, recv_rows, row // (batch * head_dim), head_dim)


def unpack_heads(recv: torch.Tensor, split: HeadSplit) -> torch.Tensor:
    """`[P, B, L, h_slots, D]` received per source rank, to `[B, L, H, D]` with every rank's heads in order."""
    P, B, L, H_SLOTS, D = recv.shape
    if split.even:
        # (P, B, L, h, D) -permute-> (B, L, P, h, D), copied contiguous -view-> (B, L, H, D)
        return copy_(recv.new_empty(B, L, P, H_SLOTS, D), recv.permute(1, 2, 0, 3, 4)).view(B, L, P * H_SLOTS, D)
    return torch.cat([recv[j, :, :, : end - start] for j, (start, end) in enumerate(split.q)], dim=2)


def all_gather_heads(out: torch.Tensor, split: HeadSplit, group: Group) -> torch.Tensor:
    """One all-gather that turns this rank's heads `[B, L, h, D]` into all heads `[B, L, H, D]`."""
    B, L, h, D = out.shape
    send = out.new_empty(B, L, split.q_max, D)
    copy_(send[:, :, :h], out)
    return unpack_heads(all_gather_stacked(send, group), split)


def all_gather_stacked(x: torch.Tensor, group: Group) -> torch.Tensor:
    """`[*shape]` from every rank -> `[P, *shape]` (contiguous `x`)."""
    out = x.new_empty(group.size * x.shape[0], *x.shape[1:])  # gloo wants the inputs concatenated along dim 0
    all_gather_single(out, x, group=group.group)
    return out.view(group.size, *x.shape)


def all_gather_dim(x: torch.Tensor, dim: int, group: Group, sizes: tuple[int, ...] | None = None):
    """Concatenate every rank's `x` along `dim` with one all-gather (the sequence gather at a transformer's exit).

    `sizes` gives each rank's length along `dim` when they differ: chunks are padded to the longest for the
    collective and trimmed after it.
    """
    if sizes is not None and len(set(sizes)) > 1:
        shape = list(x.shape)
        shape[dim] = max(sizes)
        padded = x.new_zeros(shape)
        padded.narrow(dim, 0, x.shape[dim]).copy_(x)
        out = all_gather_stacked(padded, group)
        return torch.cat([out[rank].narrow(dim, 0, n) for rank, n in enumerate(sizes)], dim=dim)
    out = all_gather_stacked(x.contiguous(), group)
    # (P, ..., S/P, ...) -movedim-> (..., P, S/P, ...) -flatten-> (..., S, ...)
    return out.movedim(0, dim).flatten(dim, dim + 1)
