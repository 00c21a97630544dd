"""Rank tasks of the separable-mask tests: every rank builds the whole sequence and its per-token validity from
seeds, builds the per-query mask of its own tokens as a model's processor does, attends through `sharded_attention`,
and returns its rows with their whole-sequence positions and the reference over the whole sequence."""

from __future__ import annotations

import torch
import torch.distributed as dist

from diffusers_usp.attention import ShardedCall, sharded_attention
from diffusers_usp.comm import chunk_sizes
from diffusers_usp.groups import Group

from .dense import _sdpa
from .ring import mesh_groups


def separable_core(R: int, others: int, replicated: int, heads: bool, key_only: bool, tangled: bool = False):
    """(this rank's output rows, their whole-sequence positions, the reference), for `[others, replicated]` tokens
    (the replicated block at the back, as HunyuanVideo 1.5's text), each rank holding its chunk of the others.

    The mask of a token set is `m_i & m_j` (padded queries masked too), or with `key_only` `m_j` for every query
    (LuminaNext's expanded key-padding mask), over `H` heads (`heads`, expanded) or one. With `tangled`, one entry
    is flipped, so the mask is no outer product: the call must raise on every rank."""
    P, rank = dist.get_world_size(), dist.get_rank()
    ulysses, ring = mesh_groups(R, P // R)
    g = torch.Generator().manual_seed(11)
    B, H, D, S = 2, 4, 8, others + replicated
    q, k, v = (torch.randn(B, S, H, D, generator=g) for _ in range(3))
    valid = torch.rand(B, S, generator=g) > 0.3
    valid[:, 0] = True
    valid[1, others:] = False  # sample 1: all its replicated (text) tokens padded
    sizes = chunk_sizes(others, P)
    start = sum(sizes[:rank])
    mine = torch.tensor(list(range(start, start + sizes[rank])) + list(range(others, S)))

    def mask_of(m: torch.Tensor) -> torch.Tensor:  # [B, n] -> [B, 1 or H, n, n], as the processors build it
        n = m.shape[1]
        rows = m[:, None, None, :].expand(B, 1, n, n)
        mask = rows if key_only else rows & rows.transpose(2, 3)
        return mask.expand(B, H, n, n) if heads else mask

    want = _sdpa(q, k, v, mask_of(valid))
    local = mask_of(valid[:, mine]).clone() if tangled else mask_of(valid[:, mine])
    if tangled:
        local[0, :, 0, 0] = ~local[0, :, 0, 0]
    seq_lens = tuple(chunk_sizes(others, P))
    call = ShardedCall(
        group=Group(None, rank, P), ulysses=ulysses, ring=ring if R > 1 else None, replicated=replicated,
        replicated_front=False, seq_lens=seq_lens if len(set(seq_lens)) > 1 else None,
    )  # fmt: skip
    x = [t.index_select(1, mine) for t in (q, k, v)]
    try:
        out = sharded_attention(*x, _sdpa, call, attn_mask=local)
    except NotImplementedError as error:
        return str(error), mine.numpy(), want.numpy()
    return out.numpy(), mine.numpy(), want.numpy()
