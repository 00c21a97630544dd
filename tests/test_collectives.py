"""Collectives per forward, counted from the c10d ops torch.distributed dispatches (`tasks.core.CollectiveCounter`,
the profiler's gloo events by name): the headline claim."""

import pytest
from tasks import core as cases

FLUX = ("flux", dict(height=4, width=6, text_len=8))
WAN = ("wan", dict(frames=3, height=8, width=8))
FLUX_ATTENTIONS = 2 + 2  # tiny Flux: 2 double-stream + 2 single-stream blocks, one joint self-attention each
WAN_BLOCKS = 2  # tiny Wan: each block has a self-attention (attn1) and a text cross-attention (attn2)


@pytest.mark.parametrize("world", [2, 3])
def test_flux_two_all_to_alls_per_attention(pools, world):
    """Catches extra collectives: separate Q/K/V all-to-alls, an all-gather for replicated rows, a per-call size
    exchange. Beyond 2 per attention, a forward may add only the output gather (and, on the first call, the input
    check)."""
    first = pools(world).run(cases.run_model, *FLUX, calls=1)[0][1]
    second = pools(world).run(cases.run_model, *FLUX, calls=2)[0][1]
    assert first == {"gloo:all_to_all": 2 * FLUX_ATTENTIONS, "gloo:all_gather": 1, "gloo:all_reduce": 1}
    assert second == {"gloo:all_to_all": 2 * FLUX_ATTENTIONS, "gloo:all_gather": 1}


def test_flux_replicated_text_adds_no_collective(pools):
    """Text that 3 ranks cannot split stays replicated: its rows must ride in the same output all-to-all."""
    counts = pools(3).run(cases.run_model, "flux", dict(height=4, width=6, text_len=7), calls=2)[0][1]
    assert counts == {"gloo:all_to_all": 2 * FLUX_ATTENTIONS, "gloo:all_gather": 1}


def test_wan_cross_attention_needs_no_collective(pools):
    """Catches cross-attention to replicated text going through an all-to-all (which also counts the text P times)."""
    counts = pools(2).run(cases.run_model, *WAN, calls=2)[0][1]
    assert counts == {"gloo:all_to_all": 2 * WAN_BLOCKS, "gloo:all_gather": 1}


def test_heads_only_fallback_one_gather_per_attention_and_warns_once(pools):
    """`set_attn_processor(USPProcessor())` without sharding: one all-gather per attention call, one warning."""
    for counts, warned in [(r[1], r[2]) for r in pools(2).run(cases.run_model, *WAN, mode="processor", calls=2)]:
        assert counts == {"gloo:all_gather": 2 * WAN_BLOCKS}
        assert len(warned) == 1 and "parallelize" in warned[0]


def test_feed_forward_sees_only_local_tokens(pools):
    """Catches a plan that shards attention but leaves the MLPs on the whole sequence (no memory or compute saved)."""
    image, text = 4 * 6, 8
    for seen in pools(2).run(cases.feed_forward_tokens, *FLUX):
        assert seen and set(seen) <= {image // 2, text // 2, (image + text) // 2}, seen
    for seen in pools(2).run(cases.feed_forward_tokens, *WAN):
        assert seen and set(seen) == {3 * 4 * 4 // 2}, seen


def test_mismatched_inputs_raise_on_every_rank(pools):
    """Ranks fed different latents must all raise, instead of returning a wrong image without a word."""
    for message in pools(2).run(cases.mismatched_inputs, *WAN):
        assert "different transformer inputs" in message


def test_a_failing_rank_does_not_hang_the_others(pools):
    """Rank 1 fails mid-forward and never reaches the next all-to-all: rank 0 must raise within the group's timeout
    instead of waiting forever."""
    pool = pools(2)
    try:
        (outcome0, seconds0), (outcome1, _) = pool.run(cases.one_rank_fails, 3.0)
    finally:
        pool.close()  # the timed-out collective may leave the pool's ranks in a state not worth reusing
    assert outcome1.startswith("raised RuntimeError: rank 1 failed")
    assert outcome0.startswith("raised"), outcome0
    assert seconds0 < 3.0 + 20.0, seconds0  # the bound, plus slack for a loaded 2-core machine


@pytest.mark.parametrize("cfg, ring", [(1, 1), (1, 2), (2, 1), (2, 2)])
def test_parallelize_again_reuses_its_process_groups(pools, cfg, ring):
    """Catches process groups made anew by every `parallelize` call: each holds gloo threads and sockets (NCCL
    communicators on GPUs) until the default group is destroyed, so a notebook parallelizing a fresh pipeline per
    cell leaked them (12 threads and 21 file descriptors per rank and call at world 4 with a ring of 2)."""
    for distinct, threads_gained, other_timeout_apart in pools(4).run(cases.groups_of_repeated_parallelize, cfg, ring):
        assert distinct == 1
        assert threads_gained == 0
        assert other_timeout_apart


def test_no_memory_growth_over_500_forwards(pools):
    """Catches state that accumulates per call: cached buffers keyed by call, hook state lists, rebound functions
    made per call. Uneven tokens and heads exercise every buffer path. The bound is 8 KB a call, as 1000 calls under
    8 MB; a fresh pool's noise after the warm-up is about 2 MB, later ones' under 0.1 MB."""
    for growth in pools(2).run(cases.memory_growth, 500):
        assert growth < 4.0, f"{growth:.1f} MB"
