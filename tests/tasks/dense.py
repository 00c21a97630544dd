"""Tasks for the dense-mask tests that every rank of a test pool runs: each rank builds the whole sequence and its
dense mask from seeds, attends its own tokens through `sharded_attention`, and returns its rows with their
whole-sequence positions, so the test compares them with SDPA over the whole sequence."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from diffusers_usp.attention import ShardedCall, sharded_attention
from diffusers_usp.comm import chunk_sizes
from diffusers_usp.groups import Group

from .ring import mesh_groups


def _sdpa(q, k, v, mask):  # BSHD
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask, enable_gqa=q.shape[2] != k.shape[2]
    )
    return out.transpose(1, 2)


def dense_core(
    R: int, others: int, text: int, replicated: int, front: bool, heads_in_mask: bool, boolean: bool, row: bool
):
    """(this rank's output rows, their whole-sequence positions, the reference over the whole sequence).

    The whole sequence is `[text or replicated, others]` (`front`) or `[others, text or replicated]`. Joint `text`
    tokens are sharded with the others, `text / P` per rank before (front) or after its other tokens; `replicated`
    ones are whole on every rank. The dense mask is random, with whole rows masked (padded queries); with `row`, one
    row `[B, 1 or H, 1, S]` for every query, with some keys masked."""
    P = dist.get_world_size()
    rank = dist.get_rank()
    ulysses, ring = mesh_groups(R, P // R)
    ring = ring if R > 1 else None
    g = torch.Generator().manual_seed(7)
    B, H, D, S = 2, 4, 8, text + replicated + others
    q, k, v = (torch.randn(B, S, H, D, generator=g) for _ in range(3))
    keep = torch.rand(B, H if heads_in_mask else 1, 1 if row else S, S, generator=g) > 0.4
    keep[..., 0] = True  # every query but one attends at least one key
    if not row:
        keep[:, :, 1] = False  # a padded query: no key at all
    mask = keep if boolean else torch.zeros(keep.shape).masked_fill(~keep, float("-inf"))
    want = _sdpa(q, k, v, mask).nan_to_num(0.0)  # a query with no key attends nothing: 0, as the ring merge gives
    sizes = chunk_sizes(others, P)
    seq_lens = tuple(n + text // P for n in sizes)
    call = ShardedCall(
        group=Group(None, rank, P),  # the world: ring-major, as the mesh lays chunks out
        ulysses=ulysses, ring=ring, replicated=replicated, replicated_front=front, text=text,
        seq_lens=seq_lens if len(set(seq_lens)) > 1 else None,
    )  # fmt: skip
    rep_pos, chunks = call.positions(seq_lens[rank])
    mine = torch.tensor((rep_pos + chunks[rank]) if front else (chunks[rank] + rep_pos))
    x = [t.index_select(1, mine) for t in (q, k, v)]
    out = sharded_attention(*x, _sdpa, call, attn_mask=mask)
    return out.numpy(), mine.numpy(), want.numpy()
