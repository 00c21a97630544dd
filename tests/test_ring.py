"""Ring attention composed with Ulysses (`diffusers_usp.ring`) against attention computed without communication."""

import random

import cases
import pytest
import ring_cases
import torch

from diffusers_usp.comm import chunk_sizes
from diffusers_usp.ring import attention_lse, merge_lse, usp_ring_attention
from diffusers_usp.state import UlyssesGroup

ALONE = UlyssesGroup(None, 0, 1)


def test_merge_lse_equals_attention_over_all_keys():
    """Catches a wrong merge weight (blocks averaged, or weighted by key count instead of by their share of the
    softmax denominator), a merge that is not associative in float32, and nan from a block in which some query rows
    see only masked keys (their lse is -inf and they must weigh nothing)."""
    g = torch.Generator().manual_seed(0)
    B, Sq, h, D, lens = 2, 5, 3, 8, (4, 3, 6)
    q = torch.randn(B, Sq, h, D, generator=g)
    k, v = (torch.randn(B, sum(lens), h, D, generator=g) for _ in range(2))
    bias = torch.zeros(B, sum(lens))
    bias[0, :4] = float("-inf")  # batch 0 sees no key of the first block
    bias[1, 4:7] = float("-inf")  # batch 1 none of the second
    starts = [0, 4, 7]
    parts = [
        attention_lse(q, k[:, s : s + n], v[:, s : s + n], bias[:, s : s + n], D**-0.5) for s, n in zip(starts, lens)
    ]
    out, lse = parts[0][0].clone(), parts[0][1]
    for block_out, block_lse in parts[1:]:
        out, lse = merge_lse(out, lse, block_out, block_lse)
    want = cases._sdpa(q, k, v, bias[:, None, None, :]).transpose(1, 2)  # [B, h, Sq, D]
    assert not out.isnan().any()
    assert (out - want).abs().max().item() <= 1e-6
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * D**-0.5 + bias[:, None, None, :]
    assert (lse - scores.logsumexp(-1)).abs().max().item() <= 1e-5
    # merging in another order (as another ring rank does) gives the same result
    out2, _ = merge_lse(parts[2][0].clone(), parts[2][1], *merge_lse(parts[1][0].clone(), parts[1][1], *parts[0]))
    assert (out2 - want).abs().max().item() <= 1e-6


def test_single_rank_is_plain_attention():
    """With ring and Ulysses groups of one, no communication is needed and the result must be plain attention:
    catches a replicated block or prefix attended twice, or replicated rows returned out of `query`'s order."""
    g = torch.Generator().manual_seed(1)
    B, L, R, T, Hq, Hkv, D = 2, 7, 3, 2, 6, 2, 8
    q = torch.randn(B, L, Hq, D, generator=g)
    k, v = (torch.randn(B, L, Hkv, D, generator=g) for _ in range(2))
    k_pre, v_pre = (torch.randn(B, T, Hkv, D, generator=g) for _ in range(2))
    mask = torch.rand(B, L, generator=g) < 0.7
    mask[:, 0] = True
    out = usp_ring_attention(q, k, v, ALONE, ALONE, replicated=R, replicated_front=False, kv_prefix=(k_pre, v_pre),
                             key_mask=mask)  # fmt: skip
    full_mask = torch.cat([torch.ones(B, T, dtype=torch.bool), mask], dim=1)[:, None, None, :]
    want = cases._sdpa(q, torch.cat([k_pre, k], 1), torch.cat([v_pre, v], 1), full_mask)
    assert (out - want).abs().max().item() <= 1e-6


def test_wrong_seq_lens_fail_with_the_numbers():
    """A `seq_lens` that does not give one count per ring x Ulysses chunk, or disagrees with this rank's tokens, must
    fail before any collective (a wrong block size would hang or misread a ring receive)."""
    q = torch.zeros(1, 4, 2, 8)
    with pytest.raises(ValueError, match=r"ring\(1\) \* ulysses\(1\) = 1"):
        usp_ring_attention(q, q, q, ALONE, ALONE, seq_lens=(4, 4))
    with pytest.raises(ValueError, match=r"L\(4\) - replicated\(1\)"):
        usp_ring_attention(q, q, q, ALONE, ALONE, replicated=1, seq_lens=(4,))


def _cases(R: int, U: int, n: int = 8):
    """Random cases cycling every feature: batch 1 and 2, GQA/MQA and head counts U does not divide, uneven sequences
    (`tensor_split` counts over all R x U chunks), a replicated block at the front or back, a K/V prefix, no, boolean
    and additive key masks."""
    rng = random.Random(10 * R + U)
    heads = [(4, 4), (6, 2), (3, 1), (5, 5), (8, 2), (3, 3), (6, 3), (2, 1)]
    rng.shuffle(heads)
    world = R * U
    for i in range(n):
        hq, hkv = heads[i % len(heads)]
        lens = chunk_sizes(rng.randint(world, 4 * world), world) if i % 2 else (rng.randint(1, 4),) * world
        replicated, front, prefix = [0, 3][(i // 2) % 2], i % 4 < 2, [0, 2][(i // 4) % 2]
        yield i, rng.choice([1, 2]), lens, hq, hkv, rng.choice([4, 8]), replicated, front, prefix, [
            None, "bool", "additive"][i % 3]  # fmt: skip


def _expected_events(R: int, U: int) -> dict[str, int]:
    """Collectives of one attention: the Ulysses all-to-all in and out, and one send plus one receive per ring shift
    (batch_isend_irecv's isend/irecv show as `gloo:send`/`gloo:recv`). Nothing else: no all-gather."""
    events = {"gloo:all_to_all": 2} if U > 1 else {}
    if R > 1:
        events.update({"gloo:send": R - 1, "gloo:recv": R - 1})
    return events


@pytest.mark.parametrize("R, U", [(2, 1), (3, 1), (2, 2), (4, 1), (1, 4)])
def test_ring_attention_matches_full_attention(pools, R, U):
    """Catches a K/V block attended twice or skipped (wrong shift direction or count), block sizes misread on uneven
    sequences, a key mask that does not travel with its block, replicated tokens or the prefix sent around the ring
    (counted R times in the softmax), GQA heads or uneven head splits mapped to the wrong K/V head, and any collective
    beyond 2 all-to-alls (U > 1) and R - 1 ring shifts."""
    for seed, *shape in _cases(R, U):
        runs = pools(R * U).run(ring_cases.ring_core, R, U, seed, *shape)
        assert max(err for err, _ in runs) <= 1e-5, shape
        assert all(events == _expected_events(R, U) for _, events in runs), (shape, runs)


@pytest.mark.parametrize("R, U, seq_lens", [(2, 1, (4, 3)), (2, 2, (3, 3, 2, 2)), (2, 2, (3, 2, 2, 2))])
def test_ring_attention_compiles_fullgraph(pools, R, U, seq_lens):
    """`torch.compile(fullgraph=True)` must trace the ring (batch_isend_irecv cannot be traced; the compiled path
    shifts by an all-to-all with one non-empty chunk) and agree with eager: catches a graph break, or a traced shift
    with the wrong split sizes on uneven ring blocks or uneven chunks inside a Ulysses group (the traced all-to-all
    takes both split lists or none). aot_eager runs Dynamo and AOTAutograd without Inductor's minutes of C++ code
    generation on 2 cores."""
    runs = pools(R * U).run(ring_cases.ring_core, R, U, 0, 2, seq_lens, 6, 2, 8, 3, False, 2, "bool", compiled=True)
    assert max(err for err, _ in runs) <= 1e-5
    expected = {"gloo:all_to_all": (2 if U > 1 else 0) + R - 1}  # the traced ring shifts are all-to-alls too
    assert all(events == expected for _, events in runs), runs
