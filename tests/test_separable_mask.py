"""Per-query masks that are the outer product of a query and a key validity vector, built by a model's processor from
its own rank's tokens (HunyuanVideo 1.5's `m_i & m_j`, LuminaNext's expanded key-padding mask): the core carries the
key vector with its keys and zeroes the rows of fully masked queries, as SDPA over the whole sequence does."""

import numpy as np
import pytest
from tasks import separable as cases

# (world, ring degree, other tokens, replicated tokens at the back, mask per head, key-only mask)
CASES = [
    (2, 1, 12, 4, False, False),  # Ulysses pair, padded text queries and keys
    (3, 1, 10, 5, True, False),  # uneven split, per-head (expanded) mask
    (4, 2, 12, 3, False, False),  # a ring of 2 Ulysses pairs
    (2, 1, 12, 0, True, True),  # LuminaNext's form: one key row expanded to every query and head
]


@pytest.mark.parametrize("world, R, others, rep, heads, key_only", CASES)
def test_separable_mask_equals_attention_over_the_whole_sequence(pools, world, R, others, rep, heads, key_only):
    """Catches a local per-query mask refused (the old behaviour), its key vector applied to the wrong keys after the
    exchange, or a padded query's row left as attention over the valid keys (stock SDPA returns 0 for it)."""
    for out, positions, want in pools(world).run(cases.separable_core, R, others, rep, heads, key_only):
        np.testing.assert_allclose(out, want[:, positions], atol=1e-5, rtol=0)


def test_mask_that_is_no_outer_product_is_refused_on_every_rank(pools):
    """Catches a per-query mask that is not separable being reduced to its key vector (a plausible wrong output)."""
    results = pools(2).run(cases.separable_core, 1, 12, 4, False, False, True)
    assert all(isinstance(out, str) and "outer product" in out for out, _, _ in results)


def test_separable_vectors_trace_into_one_graph():
    """Catches the separability check breaking `torch.compile(fullgraph=True)` (a host-side branch on the mask's
    values), and a traced check that lets a mask that is no outer product through."""
    import torch

    from diffusers_usp.separable import separable_vectors

    valid = torch.tensor([[True, True, False, True]])
    mask = (valid[:, None, :, None] & valid[:, None, None, :]).expand(1, 2, 4, 4)
    traced = torch.compile(separable_vectors, fullgraph=True, backend="eager")
    queries, keys = traced(mask)
    assert torch.equal(queries, valid) and torch.equal(keys, valid)
    tangled = mask.clone()
    tangled[0, :, 0, 2] = True
    assert separable_vectors(tangled) is None
    with pytest.raises(RuntimeError, match="not the outer product"):
        traced(tangled)
