"""Ring attention composed with Ulysses (`diffusers_usp.ring`) against attention computed without communication."""

import random

import pytest
import test_parity
import torch
from tasks import cfg as cfg_cases
from tasks import core as cases
from tasks import ring as ring_cases

from diffusers_usp import parallelize
from diffusers_usp.comm import chunk_sizes
from diffusers_usp.groups import Group, ParallelDims
from diffusers_usp.lse import attention_lse, merge_lse
from diffusers_usp.ring import ring_attention
from diffusers_usp.tiny import tiny_wan_transformer

ALONE = Group(None, 0, 1)


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
    # a first block in its kernel's half precision is accumulated in float32, not merged in its own dtype
    half = parts[0][0].bfloat16()
    got, _ = merge_lse(half, parts[0][1], *parts[1])
    assert got.dtype == torch.float32
    assert torch.equal(got, merge_lse(half.float(), parts[0][1], *parts[1])[0])


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
    out = ring_attention(q, k, v, ALONE, ALONE, replicated=R, replicated_front=False, kv_prefix=(k_pre, v_pre),
                             key_mask=mask)  # fmt: skip
    full_mask = torch.cat([torch.ones(B, T, dtype=torch.bool), mask], dim=1)[:, None, None, :]
    want = cases._sdpa(q, torch.cat([k_pre, k], 1), torch.cat([v_pre, v], 1), full_mask)
    assert (out - want).abs().max().item() <= 1e-6


def test_wrong_seq_lens_fail_with_the_numbers():
    """A `seq_lens` that does not give one count per ring x Ulysses chunk, or disagrees with this rank's tokens, must
    fail before any collective (a wrong block size would hang or misread a ring receive)."""
    q = torch.zeros(1, 4, 2, 8)
    with pytest.raises(ValueError, match=r"ring\(1\) \* ulysses\(1\) = 1"):
        ring_attention(q, q, q, ALONE, ALONE, seq_lens=(4, 4))
    with pytest.raises(ValueError, match=r"L\(4\) - replicated\(1\)"):
        ring_attention(q, q, q, ALONE, ALONE, replicated=1, seq_lens=(4,))


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


# -- `parallelize(..., ring_degree=R)`: whole models against one process ------------------------------------------

# (world, ring degree): rings of 2 and 3 single ranks, of two Ulysses pairs, and of 4 single ranks. World 4 with
# ring degree 1 (Ulysses alone) is `test_parity`'s.
RINGS = [(2, 2), (3, 3), (4, 2), (4, 4)]
# Sharded attention calls in one forward of the tiny models: one per block of Flux's 2 double and 2 single blocks, and
# one per block of Wan's 2 (the self-attention; the cross-attention attends K/V every rank holds: no ring shift).
SHARDED_ATTENTIONS = {"flux": 4, "wan": 2}
MODELS = {
    name: test_parity.CASES[name]
    for name in ("flux", "flux-6-heads", "flux-uneven", "flux-uneven-text-split-batch2", "wan-5-heads-batch2",
                 "wan-uneven")
}  # fmt: skip


@pytest.mark.parametrize("world, ring", RINGS, ids=[f"{w}-ring{r}" for w, r in RINGS])
@pytest.mark.parametrize("case", list(MODELS))
def test_parallelize_with_ring_equals_single_process(pools, case, world, ring):
    """Catches the sequence split in an order other than ring-major (the ring's chunk `r * U + u` must be the chunk
    the split gave that rank), uneven chunk sizes that disagree between the split and the ring's block sizes, text
    split over all R x U ranks but attended as replicated (or the reverse), head counts U does not divide, and a
    K/V block shifted more or fewer than R - 1 times per sharded attention (or a cross-attention sent around)."""
    model, shape, config = MODELS[case]
    want = test_parity._reference(case)
    runs = pools(world).run(cases.run_model, model, shape, ring_degree=ring, **config)
    for rank, (out, events, _) in enumerate(runs):
        assert out.shape == want.shape
        err = (out - want).abs().max().item()
        assert err <= 1e-5, f"rank {rank}: max abs error {err:.3g}"
        shifts = (ring - 1) * SHARDED_ATTENTIONS[model]  # one send and one receive each
        assert events.get("gloo:send", 0) == events.get("gloo:recv", 0) == shifts, f"rank {rank}: {events}"
        assert "gloo:broadcast" not in events


def test_ring_degree_is_validated_with_the_numbers():
    """Catches a ring degree that does not split the ranks into equal Ulysses groups reaching the mesh (a hang or a
    wrong group), and messages that do not say which numbers disagree."""
    with pytest.raises(ValueError, match=r"ring_degree \(3\) must divide the world size \(4\)"):
        ParallelDims((0, 1, 2, 3), ring=3)
    with pytest.raises(ValueError, match=r"cfg_degree \(2\) x ring_degree \(2\) = 4 must divide the world size \(6\)"):
        ParallelDims(tuple(range(6)), cfg=2, ring=2)
    with pytest.raises(ValueError, match=r"ring_degree must be a positive integer, not 0"):
        ParallelDims((0, 1), ring=0)
    with pytest.raises(ValueError, match=r"ring_degree \(2\) must divide the world size \(1\)"):
        parallelize(tiny_wan_transformer(), ring_degree=2)  # one process, no process group
    assert ParallelDims(tuple(range(16)), cfg=2, ring=2).shape == (2, 2, 4)


def test_ring_degree_that_does_not_divide_is_refused_on_every_rank(pools):
    for message in pools(4).run(ring_cases.refused, 3):
        assert "ring_degree (3) must divide the world size (4)" in message


@pytest.mark.parametrize("cfg, ring", [(1, 2), (2, 2)])
def test_mesh_keeps_ulysses_innermost_and_gives_every_group_the_timeout(pools, cfg, ring):
    """Ulysses groups must be consecutive ranks (one machine), ring groups the ranks of one Ulysses position across
    groups, and the sequence group ring-major (its rank `r * U + u` is the chunk the split gives): catches a mesh in
    another order, which would still be exact on one machine but put the all-to-alls on the slow links."""
    for rank, layout in enumerate(pools(4).run(cfg_cases.mesh_layout, 7.0, cfg, ring)):
        if cfg == 1:  # a ring of 2 Ulysses pairs
            assert layout["mesh"] == ([[[0, 1], [2, 3]]], ("cfg", "ring", "ulysses"))
            assert layout["ulysses"] == ([rank // 2 * 2, rank // 2 * 2 + 1], rank % 2, 2, 7.0)
            assert layout["ring"] == ([rank % 2, rank % 2 + 2], rank // 2, 2, 7.0)
            assert layout["sequence"] == ([0, 1, 2, 3], rank, 4, 7.0)
        else:  # 2 CFG groups, each a ring of 2 single ranks
            assert layout["mesh"] == ([[[0], [1]], [[2], [3]]], ("cfg", "ring", "ulysses"))
            assert layout["cfg"] == ([rank % 2, rank % 2 + 2], rank // 2, 2, 7.0)
            assert layout["ring"] == ([rank // 2 * 2, rank // 2 * 2 + 1], rank % 2, 2, 7.0)
            assert layout["sequence"] == layout["ring"]


def test_cfg_parallel_with_a_ring_equals_one_process(pools):
    """cfg_degree=2 x ring_degree=2 on 4 ranks: each CFG group runs its call as a ring of 2 ranks, and the pairing
    stays exact on every rank."""
    calls = cfg_cases.wan_calls(3)
    want = cfg_cases.wan_reference(calls)
    for rank, result in enumerate(pools(4).run(cfg_cases.sequential, calls, ring_degree=2)):
        assert result["computed"] == [True, True] + [rank < 2, rank >= 2] * 2
        for i, (got, ref) in enumerate(zip(result["outputs"], want)):
            assert (got - ref).abs().max().item() <= 1e-5, f"rank {rank}, call {i}"
        assert result["events"]["gloo:send"] == 2 * 2  # 2 steps x 2 sharded attentions x 1 ring shift


@pytest.mark.parametrize("world, ring, model, shape", [
    (2, 2, "flux", dict(height=5, width=5, text_len=7)),  # uneven blocks, replicated text
    (4, 2, "wan", dict(frames=3, height=8, width=8)),
])  # fmt: skip
def test_parallelize_with_ring_compiles_fullgraph(pools, world, ring, model, shape):
    """The whole parallelized transformer with a ring traces without a graph break and matches eager."""
    for err, warned in pools(world).run(cases.compiled_vs_eager, model, shape, "aot_eager", ring):
        assert warned == []
        assert err <= 1e-6


def test_mismatched_inputs_fail_on_every_rank_with_a_ring(pools):
    for message in pools(4).run(cases.mismatched_inputs, "wan", dict(frames=3, height=8, width=8), 2):
        assert "different transformer inputs" in message, message


def test_remove_and_reparallelize_with_a_ring(pools):
    for exact, message in pools(2).run(ring_cases.removed_and_reparallelized):
        assert exact
        assert "already parallelized with cfg_degree=1 and ring_degree=2" in message
