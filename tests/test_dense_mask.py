"""Dense masks over the whole sequence (`[B, 1 or H, S, S]`, per query and key, built by the model from whole-sequence
metadata such as Chroma's padding vector): after the exchange a rank holds every query and key of its heads, so the
mask applies exactly, in Ulysses and around a ring."""

import numpy as np
import pytest
from tasks import dense as dense_cases

# (world, ring degree, other tokens, joint text sharded, replicated, front, per-head mask, boolean, one row for all)
CASES = [
    (2, 1, 12, 4, 0, True, False, True),  # text sharded: each rank's chunk is [text_r, image_r]
    (3, 1, 10, 0, 5, True, True, False),  # a replicated block, uneven others, per-head additive mask
    (3, 1, 9, 6, 0, False, False, True),  # text after the others (SD3's order)
    (2, 2, 8, 4, 0, True, False, True),  # a ring of 2 single ranks
    (4, 2, 14, 0, 3, False, True, True),  # a ring of 2 Ulysses pairs, replicated block at the back, uneven
    (3, 1, 9, 6, 0, False, False, True, True),  # a whole-sequence key mask [B, 1, 1, S] (JoyImage-Edit-Plus)
    (4, 2, 12, 4, 0, False, True, False, True),  # the same, per head, additive, around a ring
]
CASES = [case if len(case) == 9 else (*case, False) for case in CASES]


@pytest.mark.parametrize("world, R, others, text, rep, front, heads, boolean, row", CASES)
def test_dense_mask_equals_attention_over_the_whole_sequence(
    pools, world, R, others, text, rep, front, heads, boolean, row
):
    """Catches a dense mask applied in the exchange's order instead of the sequence's (rows or columns permuted),
    sliced to the wrong heads or ring block, or a fully masked query row that turns into NaN or into noise."""
    for out, positions, want in pools(world).run(
        dense_cases.dense_core, R, others, text, rep, front, heads, boolean, row
    ):
        np.testing.assert_allclose(out, want[:, positions], atol=1e-5, rtol=0)
