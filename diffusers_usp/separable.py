"""Separable per-query masks: a dense `[B, 1 or H, L, L]` boolean mask over a rank's own tokens that is the outer
product of one validity vector for the queries and one for the keys, `mask[b, h, i, j] = q[b, i] & k[b, j]`. No
diffusers imports.

Models build such masks inside their processors from their own tokens (HunyuanVideo 1.5: `m_i & m_j` over `[video,
text]`, so padded text queries are masked too; LuminaNext: a key-padding vector expanded to every query and head).
A rank cannot apply the mask itself after the exchange: it holds rows and columns of its own tokens only. But the
two vectors are per-token metadata, so the core carries them instead of the mask:

- the key vector travels with its keys, as a key-padding mask (one extra slot of the all-to-all, or of the ring's
  K/V block: `ulysses.py`, `ring.py`), so no rank ever holds a mask larger than its own `[B, L, L]`;
- a query with no valid key is a fully masked row: SDPA returns 0 for it (torch >= 2.5's safe softmax, which the
  single-process model runs), so its output rows are set to 0 on the rank that holds them, after the exchange out.

Telling the mask apart costs one comparison of the model's own local mask with the outer product of its vectors,
block by block (temporaries of 1/8 of the model's `[B, L, L]` local mask, L the local token count, which is itself
about 1/P^2 of the single process's), and a few host synchronisations per attention call (one per block). A mask
that is not separable is refused on every rank with its shape.
"""

from __future__ import annotations

import torch

from .compat import assert_async

# The comparison runs over row blocks of the mask, so its temporaries take 1/8 of the model's own local mask.
_CHECK_CHUNKS = 8


def separable_vectors(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """`(query_valid, key_valid)`, two `[B, L]` boolean vectors whose outer product is `mask`, or `None` when `mask`
    is not such an outer product (or not a boolean `[B, 1 or H, L, L]` mask with every head alike).

    Args:
        mask (`torch.Tensor`): `[B, 1 or H, L, L]`, rows for queries and columns for keys, a rank's own tokens.
    """
    if mask.dtype != torch.bool or mask.dim() != 4 or mask.shape[-1] != mask.shape[-2]:
        return None
    first = mask[:, 0]  # [B, L, L]
    if torch.compiler.is_compiling():
        return _checked_on_device(mask, first)
    if mask.shape[1] > 1 and mask.stride(1) != 0:  # real per-head masks (not one expanded over heads) must agree
        if not all(torch.equal(mask[:, h], first) for h in range(1, mask.shape[1])):
            return None
    if first.stride(1) == 0:  # one row expanded over every query (LuminaNext): a key-padding mask as it stands
        keys = first[:, 0]
        return torch.ones_like(keys), keys
    queries, keys = first.any(dim=-1), first.any(dim=-2)  # [B, L]: a valid query has a key; a valid key a query
    rows = max(1, -(-first.shape[1] // _CHECK_CHUNKS))
    for r0 in range(0, first.shape[1], rows):  # [B, rows, L] at a time: the outer product is never whole
        if not torch.equal(first[:, r0 : r0 + rows], queries[:, r0 : r0 + rows, None] & keys[:, None, :]):
            return None
    return queries, keys


def _checked_on_device(mask: torch.Tensor, first: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`separable_vectors` inside a traced graph, which must not branch on data: the vectors, with the check that
    they make the mask an assertion on the device (Inductor fuses the comparison; nothing `[B, L, L]` is kept)."""
    queries, keys = first.any(dim=-1), first.any(dim=-2)
    outer = queries[:, None, :, None] & keys[:, None, None, :]
    assert_async(
        (mask == outer).all(),
        "diffusers_usp: a sharded self-attention got a [B, 1 or H, L, L] mask over this rank's tokens that is not the "
        "outer product of a query and a key validity vector (or differs between heads): it cannot follow its keys "
        "through the all-to-all. Run this model with USPProcessor() alone (heads only, any mask) instead.",
    )
    return queries, keys


def zero_invalid_rows(out: torch.Tensor, query_valid: torch.Tensor) -> torch.Tensor:
    """`out` (`[B, L, H, D]`) with the rows of queries that attend no key set to 0, as SDPA returns them.
    `masked_fill`, not a product: a ring merge may leave NaN in such a row."""
    return out.masked_fill(~query_valid[:, :, None, None], 0.0)
