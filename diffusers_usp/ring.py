"""Unified sequence parallelism: ring attention across Ulysses groups. No diffusers imports.

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

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as funcol

from .comm import HeadSplit, copy_, exchange_out, exchange_qkv, head_split, pack_out, pack_qkv, unpack_heads, unpack_qkv
from .state import UlyssesGroup

# The fused kernel's dtypes (not float64); it also wants the head dim 8-aligned.
_FUSED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def attention_lse(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of one key block that also returns its log-sum-exp, the statistic an exact merge needs.

    Args:
        q (`torch.Tensor`): `[B, Sq, h, D]` queries.
        k, v (`torch.Tensor`): `[B, Sk, h, D]` keys and values, one per query head (GQA already expanded).
        bias (`torch.Tensor`, *optional*): `[B, Sk]` additive float32 key bias (`-inf` masks a key).
        scale (`float`): the softmax scale.

    Returns:
        `(out, lse)`: `[B, h, Sq, D]` in the kernel's dtype (float32 on the math path; `merge_lse` accumulates in
        float32) and `[B, h, Sq]` in float32. A row with no attended key has `lse = -inf` and `out = 0`, so that it
        weighs nothing in a merge.
    """
    if q.is_cuda and q.shape[-1] % 8 == 0 and q.dtype in _FUSED_DTYPES:  # else the math path below
        return _attention_lse_cuda(q, k, v, bias, scale)
    # (B, S, h, D) -transpose-> (B, h, S, D), in float32 whatever the input dtype
    q_bhsd, k_bhsd, v_bhsd = (x.transpose(1, 2).float() for x in (q, k, v))
    scores = q_bhsd @ k_bhsd.transpose(-1, -2) * scale  # [B, h, Sq, Sk]
    if bias is not None:
        scores = scores + bias[:, None, None, :]
    lse = scores.logsumexp(dim=-1)  # [B, h, Sq]
    probs = torch.exp(scores - _finite(lse).unsqueeze(-1))  # rows of only -inf scores: exp(-inf) = 0, not nan
    return probs @ v_bhsd, lse


# Per CUDA device index: whether its cuDNN attention is the fast kernel (Hopper and later, where SDPA itself picks it).
_CUDNN_FAST: dict[int | None, bool] = {}


def _cudnn_fast(device: torch.device) -> bool:
    fast = _CUDNN_FAST.get(device.index)
    if fast is None:
        fast = torch.backends.cudnn.is_available() and torch.cuda.get_device_capability(device) >= (9, 0)
        _CUDNN_FAST[device.index] = fast
    return fast


def kernel_bias(bias: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """A `[B, Sk]` key bias as the fused kernels take it, for `[B, h, Sq, D]` queries `q`: in their dtype, its rows
    16-aligned (padded, then sliced, as SDPA does), expanded without a copy to `[B, h, Sq, Sk]`."""
    (B, h, Sq, _), Sk = q.shape, bias.shape[-1]
    padded = q.new_zeros(B, 1, 1, -(-Sk // 16) * 16)
    padded[:, 0, 0, :Sk] = bias
    return padded[..., :Sk].expand(B, h, Sq, Sk)


def _attention_lse_cuda(q, k, v, bias, scale):
    """`attention_lse` on CUDA. In half precision on Hopper and later: cuDNN's kernel, the one SDPA itself runs
    there, asked for the LSE (float32), with the key bias when there is one. On an H200, flash attention took 1.6 to
    1.8 times as long as cuDNN's at ring-block shapes, and the memory-efficient kernel 3.2 times
    (`benchmarks/lse_kernels.py`). Before Hopper: flash attention without a bias. With a bias there, or in float32:
    the memory-efficient kernel, which takes a float bias and returns the LSE too."""
    B, Sq, h, D = q.shape
    q_, k_, v_ = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    attn_bias = None if bias is None else kernel_bias(bias, q_)
    half = q.dtype != torch.float32 and D <= 128
    if half and _cudnn_fast(q.device):
        out, lse = torch.ops.aten._scaled_dot_product_cudnn_attention(q_, k_, v_, attn_bias, True, scale=scale)[:2]
        lse = lse.reshape(B, h, Sq)
    elif half and bias is None:
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention(q_, k_, v_, scale=scale)[:2]
        lse = lse.reshape(B, h, Sq)
    else:
        out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(q_, k_, v_, attn_bias, True, scale=scale)[:2]
        lse = lse[..., :Sq]  # padded to a multiple of 32 queries
    if bias is None:
        return out, lse  # every row attends at least one key, so no lse is -inf
    # A key-padding bias is the same for every query and head: a batch row whose keys of this block are all masked
    # has no attended key in any row. Set what the kernel leaves there (not specified) to what a merge needs.
    dead = torch.isneginf(bias).all(dim=-1)  # [B]
    lse = lse.masked_fill(dead[:, None, None], float("-inf"))
    out = out.masked_fill(dead[:, None, None, None], 0.0)
    return out, lse


def _finite(lse: torch.Tensor) -> torch.Tensor:
    return lse.masked_fill(lse == float("-inf"), 0.0)


def merge_lse(
    out: torch.Tensor, lse: torch.Tensor, block_out: torch.Tensor, block_lse: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold one block's partial attention into the running one, exactly: each side is weighted by its share of the
    softmax denominator, `exp(lse_side - lse_total)`.

    Args:
        out, block_out (`torch.Tensor`): `[B, h, Sq, D]` partial outputs. A float32 `out` is updated in place; one in
            another dtype (the first block's, as its kernel returned it) is replaced by a float32 tensor.
        lse, block_lse (`torch.Tensor`): `[B, h, Sq]` float32 log-sum-exps of the keys each side attended.

    Returns:
        `(out, lse)` over the keys of both sides, `out` in float32.
    """
    total = torch.logaddexp(lse, block_lse)
    anchor = _finite(total)  # a row no key of either side reaches stays 0 (and -inf) instead of nan
    weight = torch.exp(lse - anchor).unsqueeze(-1)
    # Two passes over the output: scale (reading the first block in its own dtype), then a fused multiply-add.
    out = out.mul_(weight) if out.dtype == torch.float32 else out * weight
    return out.addcmul_(block_out, torch.exp(block_lse - anchor).unsqueeze(-1)), total


def _kv_block(k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The buffer that travels the ring: `[B, S_BLOCK, 2 * hkv (+1), D]`, K heads, V heads, and the key mask in the
    first element of one extra slot (one send per shift instead of two or three)."""
    B, S_BLOCK, hkv, D = k.shape
    block = k.new_empty(B, S_BLOCK, 2 * hkv + (mask is not None), D)
    copy_(block[:, :, :hkv], k)
    copy_(block[:, :, hkv : 2 * hkv], v)
    if mask is not None:
        block[:, :, -1, 0].copy_(mask)  # bool becomes 1.0/0.0, decoded by `> 0.5`
    return block


def _shift(block: torch.Tensor, recv_rows: int, ring: UlyssesGroup) -> tuple[torch.Tensor, list]:
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


def _bias(mask: torch.Tensor, boolean: bool) -> torch.Tensor:
    """A key mask (bool, or its 1.0/0.0 encoding in a packed slot, or additive) as an additive float32 bias."""
    if boolean:
        keep = mask if mask.dtype == torch.bool else mask > 0.5
        return torch.zeros(keep.shape, device=keep.device).masked_fill(~keep, float("-inf"))
    return mask.float()


def _heads_for_queries(x: torch.Tensor, split: HeadSplit, rank: int) -> torch.Tensor:
    """`[B, S, hkv, D]` -> `[B, S, h, D]`: one K/V head per local query head (GQA)."""
    index = split.kv_index(rank)
    if index is not None:
        return x.index_select(2, torch.tensor(index, device=x.device))
    return x.repeat_interleave(split.group_size, dim=2) if split.group_size > 1 else x


def usp_ring_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    ulysses: UlyssesGroup,
    ring: UlyssesGroup,
    *,
    replicated: int = 0,
    replicated_front: bool = True,
    kv_prefix: tuple[torch.Tensor, torch.Tensor] | None = None,
    seq_lens: tuple[int, ...] | None = None,
    key_mask: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Attention over a sequence sharded across a ring of Ulysses groups: two all-to-alls inside the Ulysses group
    and R - 1 point-to-point shifts of key/value blocks around the ring group. Never an all-gather.

    Args:
        query, key, value (`torch.Tensor`):
            This rank's `[B, L, H, D]` tensors (`Hkv` may divide `Hq`). `L` = this rank's sharded tokens +
            `replicated`.
        ulysses (`UlyssesGroup`): the U ranks of one ring block (contiguous ranks, inside one machine).
        ring (`UlyssesGroup`): the R ranks holding the same heads of different blocks. This rank holds global chunk
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
    split = head_split(Hq, key.shape[2], U)
    u = ulysses.rank
    (q0, q1), (kv0, kv1) = split.q[u], split.kv[u]
    sharded = slice(replicated, L) if replicated_front else slice(0, L - replicated)
    rep = slice(0, replicated) if replicated_front else slice(L - replicated, L)
    group_lens = lens[ring.rank * U : (ring.rank + 1) * U]  # the chunks of this rank's ring block
    block_lens = tuple(sum(lens[j * U : (j + 1) * U]) for j in range(R))
    boolean = key_mask is not None and key_mask.dtype == torch.bool

    # 1. Ulysses in: block r's tokens, this rank's heads.
    mask_sent = key_mask[:, sharded] if key_mask is not None else None
    if U > 1:
        mask_sent = mask_sent.to(query.dtype) if mask_sent is not None else None
        send = pack_qkv(query[:, sharded], key[:, sharded], value[:, sharded], split, mask_sent)
        recv = exchange_qkv(send, ulysses, group_lens if len(set(group_lens)) > 1 else None)
        q, k, v, mask = unpack_qkv(recv, split, u)  # [B, S_BLOCK, h | hkv, D], mask [B, S_BLOCK]
    else:
        q, k, v, mask = query[:, sharded], key[:, sharded], value[:, sharded], mask_sent
    hkv = k.shape[2]
    block = _kv_block(k, v, mask)

    # Replicated tokens, this rank's heads sliced locally: queried in every step, attended as keys in the local one.
    if replicated:
        q = torch.cat([query[:, rep, q0:q1], q], dim=1)  # [B, replicated + S_BLOCK, h, D]
    k_local, v_local, bias_local = [], [], []
    if kv_prefix is not None:
        k_local.append(kv_prefix[0][:, :, kv0:kv1])
        v_local.append(kv_prefix[1][:, :, kv0:kv1])
        bias_local.append(torch.zeros(B, kv_prefix[0].shape[1], device=query.device))
    if replicated:
        k_local.append(key[:, rep, kv0:kv1])
        v_local.append(value[:, rep, kv0:kv1])
        if key_mask is not None:
            bias_local.append(_bias(key_mask[:, rep], boolean))

    # 2-3. The ring: attend the block held, with the next one already in flight; merge by log-sum-exp.
    out = lse = None
    for step in range(R):
        source = (ring.rank - step) % R  # the ring rank whose block this is
        if step + 1 < R:
            incoming, works = _shift(block, block_lens[(source - 1) % R], ring)
        k_b, v_b = block[:, :, :hkv], block[:, :, hkv : 2 * hkv]
        bias = _bias(block[:, :, -1, 0], boolean) if key_mask is not None else None
        if step == 0 and k_local:
            k_b, v_b = torch.cat([*k_local, k_b], dim=1), torch.cat([*v_local, v_b], dim=1)
            bias = torch.cat([*bias_local, bias], dim=1) if bias is not None else None
        k_b, v_b = _heads_for_queries(k_b, split, u), _heads_for_queries(v_b, split, u)
        block_out, block_lse = attention_lse(q, k_b, v_b, bias, scale)
        out, lse = (block_out, block_lse) if out is None else merge_lse(out, lse, block_out, block_lse)
        if step + 1 < R:
            for work in works:
                work.wait()
            block = incoming

    # (B, h, replicated + S_BLOCK, D) -transpose-> (B, replicated + S_BLOCK, h, D), cast in the same copy
    out = query.new_empty(B, out.shape[2], out.shape[1], D).copy_(out.transpose(1, 2))
    if U > 1:  # 4. Ulysses out; the replicated rows ride to every destination in the same collective.
        send = pack_out(out, split, group_lens, replicated, not replicated_front)
        return unpack_heads(exchange_out(send, ulysses, group_lens, replicated, B, D), split)
    if replicated and not replicated_front:
        return torch.cat([out[:, replicated:], out[:, :replicated]], dim=1)
    return out
