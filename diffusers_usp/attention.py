"""The USP attention core: the one entry for each kind of attention call. No diffusers imports.

- `sharded_attention`: the sequence is sharded. It validates the call once (causal masks, key counts, uneven
  splits, mask forms), then runs Ulysses in, the kernel, Ulysses out (`ulysses.py`), or Ulysses in, a ring loop over
  key/value blocks, Ulysses out (`ring.py`) when the sequence group is a ring of Ulysses groups.
- `cross_attention`: queries sharded, keys/values whole on every rank (cross-attention to text). Softmax is per
  query row, so attending local queries to the whole K/V is exact and needs no collective.
- `head_parallel_attention`: nothing sharded (every rank holds the whole Q/K/V). Each rank attends its own heads
  and one all-gather completes them.
- queries of one sharded sequence attending keys/values of another (LTX-2's audio and video): `two_sequences.py`,
  its own module (`attend_two`), with its exchange of two sequences of different lengths.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from .comm import all_gather_heads, head_split
from .groups import Group
from .layout import ShardedCall
from .ring import DenseMask, ring_attention
from .separable import separable_vectors, zero_invalid_rows
from .token_mask import BlockCausalMask, block_causal_attention
from .ulysses import Kernel, kv_for_queries, ulysses_attention, ulysses_in, ulysses_out


def sharded_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    kernel: Kernel,
    call: ShardedCall,
    *,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
    kv_prefix: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Attention over a sequence sharded across `call.group`.

    Args:
        query, key, value (`torch.Tensor`): this rank's `[B, L, H, D]` tensors, `L` = its sharded tokens +
            `call.replicated` (`Hkv` may divide `Hq`).
        kernel (`Kernel`): the model's local attention on `[B, S, h, D]` tensors (the ring uses its own LSE kernels).
        call (`ShardedCall`): where the tokens lie.
        attn_mask (`torch.Tensor` or `BlockCausalMask`, *optional*): a key-padding mask (`[B, L]`, `[B, 1, L]` or
            `[B, 1, 1, L]`, boolean or additive; with `kv_prefix`, over its `T` keys and then these, `T + L` long); a
            dense mask over the whole sequence (`_is_dense`); a boolean `[B, 1 or H, L, L]` mask over this rank's tokens
            that is separable into query and key validity vectors (`separable.py`); or a `BlockCausalMask` (from
            per-token metadata, `token_mask.py`). Any other mask is refused.
        kv_prefix (`tuple[torch.Tensor, torch.Tensor]`, *optional*): replicated `[B, T, Hkv, D]` keys and values.

    Returns:
        `[B, L, H, D]`, rows in the order of `query`.
    """
    if call.sharded_here is not None:
        kept = query.shape[1] - call.sharded_here
        if not 0 <= kept <= call.replicated:
            raise ValueError(
                f"{call.who}: {query.shape[1]} tokens reach this attention: not this rank's {call.sharded_here} "
                f"sharded tokens followed by at most the {call.replicated} replicated ones."
            )
        call = replace(call, replicated=kept, sharded_here=None)
    if is_causal:
        raise NotImplementedError(
            f"{call.who}: causal attention over a sharded sequence is not supported: the all-to-all gathers tokens in "
            "rank order, which for joint text and image is not the sequence order a causal mask refers to."
        )
    if key.shape[1] != query.shape[1]:
        raise ValueError(
            f"{call.who}: a sharded self-attention got {query.shape[1]} query tokens but {key.shape[1]} key tokens. "
            "If this module attends to replicated tokens (cross-attention), its sequence plan must list it in "
            "`cross_attention`."
        )
    rank = call.group.rank
    if call.seq_lens is not None and call.seq_lens[rank] != query.shape[1] - call.replicated:
        raise ValueError(
            f"{call.who}: {query.shape[1] - call.replicated} sharded tokens reach this attention, but the uneven "
            f"split gave this rank {call.seq_lens[rank]}: its sequence is not the one that was split unevenly. "
            f"Choose token counts that {call.group.size} divides for this model, or mark the module in its plan."
        )
    if isinstance(attn_mask, BlockCausalMask):  # a mask from per-token metadata (`token_mask.py`)
        if kv_prefix is not None or dropout_p:
            raise NotImplementedError(f"{call.who}: a block-causal mask with a K/V prefix or attention dropout.")
        return block_causal_attention(query, key, value, kernel, call, attn_mask, scale)
    if attn_mask is not None and not isinstance(attn_mask, torch.Tensor):
        raise NotImplementedError(
            f"{call.who}: a {type(attn_mask).__name__} attention mask over a sharded sequence is not supported: a flex "
            "BlockMask's mask_mod reads whole-sequence positions that this rank's rows do not follow. Use the model's "
            "attention processor that takes a tensor mask or segments (Qwen-Image 2.1: QwenImage21AttnProcessor)."
        )
    local = query.shape[1] - call.replicated
    # With a K/V prefix the mask is over `T + L` keys, which may equal the whole sequence's length by chance: never
    # dense then (a dense mask with a prefix is refused by `_key_mask`, as any mask with more than one row).
    if kv_prefix is None and _is_dense(attn_mask, call, local):
        dense = DenseMask(attn_mask, *call.positions(local))
        if call.ring is None or call.ring.size == 1:
            return _ulysses_dense(query, key, value, kernel, call, dense)
        if dropout_p:
            raise NotImplementedError(f"{call.who}: ring attention does not apply attention dropout (training).")
        return ring_attention(
            query, key, value, call.ulysses, call.ring, scale=scale, replicated=call.replicated,
            replicated_front=call.replicated_front, seq_lens=call.seq_lens, dense=dense,
        )  # fmt: skip
    if attn_mask is not None and attn_mask.dim() == 4 and attn_mask.shape[-2] == query.shape[1] > 1:
        vectors = separable_vectors(attn_mask)
        if vectors is not None:  # the key vector follows its keys; fully masked query rows are 0, as in SDPA
            out = sharded_attention(
                query, key, value, kernel, call, attn_mask=vectors[1], scale=scale, dropout_p=dropout_p,
                kv_prefix=kv_prefix,
            )  # fmt: skip
            return zero_invalid_rows(out, vectors[0])
    keys = key.shape[1] + (kv_prefix[0].shape[1] if kv_prefix is not None else 0)
    key_mask = None if attn_mask is None else _key_mask(attn_mask, query.shape[0], keys, call.who)
    layout = dict(
        replicated=call.replicated, replicated_front=call.replicated_front, kv_prefix=kv_prefix,
        seq_lens=call.seq_lens, key_mask=key_mask,
    )  # fmt: skip
    if call.ring is None or call.ring.size == 1:
        return ulysses_attention(query, key, value, kernel, call.ulysses, **layout)
    if dropout_p:
        raise NotImplementedError(f"{call.who}: ring attention does not apply attention dropout (training).")
    # Ring steps attend with a kernel that returns the log-sum-exp (`lse.attention_lse`), not with the model's
    # kernel: the exact merge of blocks needs it, and diffusers' backends do not return it.
    return ring_attention(query, key, value, call.ulysses, call.ring, scale=scale, **layout)


def _is_dense(mask: torch.Tensor | None, call: ShardedCall, local: int) -> bool:
    """Whether `mask` is a mask over the whole sequence (every rank's tokens), which the model built from
    whole-sequence metadata (a padding vector the plan keeps whole): `[B, 1 or H, S, S]`, rows for queries and
    columns for keys, or `[B, 1 or H, 1, S]`, one row for every query; in the single process's order."""
    if mask is None or mask.dim() != 4 or call.group.size == 1:
        return False
    total = call.replicated + (sum(call.seq_lens) if call.seq_lens is not None else local * call.group.size)
    return mask.shape[-1] == total and mask.shape[-2] in (1, total)


def _ulysses_dense(query, key, value, kernel: Kernel, call: ShardedCall, dense: DenseMask) -> torch.Tensor:
    """Ulysses with a dense mask over the whole sequence: after the exchange this rank holds every query and key of
    its heads, so it attends them in the single process's order, under the model's own mask (sliced to its heads,
    never copied whole), and returns the rows to the exchange's order."""
    group = call.ulysses
    ex = ulysses_in(
        query, key, value, group,
        replicated=call.replicated, replicated_front=call.replicated_front, seq_lens=call.seq_lens,
    )  # fmt: skip
    k, v, _ = ex.keys()
    order = dense.order(range(group.size), query.device)  # whole-sequence position of each row of ex.q and k
    inverse = torch.argsort(order)  # row of ex.q holding whole-sequence position i
    q, k, v = (x.index_select(1, inverse) for x in (ex.q, k, v))
    k, v = kv_for_queries(k, ex.split, group.rank), kv_for_queries(v, ex.split, group.rank)
    out = kernel(q, k, v, dense.heads(*ex.split.q[group.rank]))
    return ulysses_out(out.index_select(1, order), ex, group)


def _key_mask(mask: torch.Tensor, batch: int, keys: int, who: str) -> torch.Tensor:
    """`[B, keys]` from a key-padding mask (`[B, keys]`, `[B, 1, keys]` or `[B, 1, 1, keys]`, boolean or additive)."""
    if mask.dim() > 2 and all(n == 1 for n in mask.shape[1:-1]):
        mask = mask.reshape(mask.shape[0], mask.shape[-1])
    if mask.dim() != 2 or mask.shape[-1] != keys or mask.shape[0] not in (1, batch):
        raise NotImplementedError(
            f"{who}: a sharded self-attention got a mask of shape {tuple(mask.shape)}. Only key-padding masks (the "
            f"same for every query and head: [B, {keys}], [B, 1, {keys}] or [B, 1, 1, {keys}]) can follow their keys "
            "through the all-to-all, as can boolean per-query masks [B, 1 or H, L, L] over this rank's tokens that are "
            "the outer product of a query and a key validity vector. Run this model with USPProcessor() alone (heads "
            "only, any mask) instead."
        )
    return mask.expand(batch, keys)


def cross_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, kernel: Kernel, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Sharded queries against keys/values every rank holds whole: exact with no communication."""
    return kernel(query, key, value, mask)


def head_parallel_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    kernel: Kernel,
    group: Group,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Every rank holds the whole sequence: attend this rank's heads, then one all-gather of the output.

    `mask` may carry a head dim (`[B, H, Lq, Lk]`); it is sliced to this rank's heads. Masks without one broadcast.
    """
    H = query.shape[2]
    split = head_split(H, key.shape[2], group.size)
    (q0, q1), (kv0, kv1) = split.q[group.rank], split.kv[group.rank]
    k, v = (kv_for_queries(x[:, :, kv0:kv1], split, group.rank) for x in (key, value))
    if mask is not None and mask.ndim == 4 and mask.shape[1] == H and H > 1:
        mask = mask[:, q0:q1]
    out = kernel(query[:, :, q0:q1], k, v, mask)
    return all_gather_heads(out, split, group)
