"""Tiling spread over ranks (`diffusers_usp/vae_tiles.py`): with `enable_tiling()` on, a split VAE's tiled decode and
encode equal the single-process tiled output bit for bit at 2, 3 and 4 ranks, every tile computed by exactly one
rank, and a failing tile raises on every rank instead of hanging."""

import functools

import numpy as np
import pytest
import torch
from tasks import vae_tiles as cases

WORLDS = (2, 3, 4)


@functools.cache
def _reference(name: str):
    return _one_thread(cases.run, name, split=False)


def _one_thread(fn, *args, **kwargs):
    """`fn(...)` on one thread, as on the pool's ranks: a CPU conv's reduction order, and so its last bit, follows
    the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn(*args, **kwargs)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("world", WORLDS)
def test_tiles_spread_equal_one_process_tiled(pools, world):
    """Catches a tile blended from the wrong rank's output or in the wrong order (the gathered outputs replayed out
    of call order), a tile computed by no rank or by two (the work sums differ), a rank that keeps all the work (its
    share is the whole), tiles of one causal chain split between ranks (CogVideoX's `conv_cache=`, Wan's
    `feat_cache=`: a rank would read a cache it never filled), and uneven tile counts (8 tiles at 3 ranks) misplaced.
    Each tile is computed whole by one rank with the same ops, so the results are bit-exact."""
    # Wan and HunyuanVideo's frames (their shape probes on the meta device cost seconds of Python on this machine)
    # at the uneven world only
    names = [name for name in cases.CLASSES if world == 3 or name in ("AutoencoderKL", "AutoencoderKLCogVideoX")]
    runs = pools(world).run(cases.tiles_run, names)
    for name in names:
        want_dec, want_enc, want_work = _reference(name)
        for rank in runs:
            got_dec, got_enc, _ = rank[name]
            assert np.array_equal(got_dec, want_dec), (name, np.abs(got_dec - want_dec).max())
            assert np.array_equal(got_enc, want_enc), (name, np.abs(got_enc - want_enc).max())
        shares = [rank[name][2] for rank in runs]
        assert sum(shares) == want_work, (name, shares, want_work)  # every tile once, over all ranks
        assert max(shares) < want_work, (name, shares)  # spread, not whole on one rank


def test_a_failing_tile_raises_on_every_rank(pools):
    """Catches a hang: rank 1's decoder fails on its first tile while the others finish theirs and would wait in the
    tiles' all-gather for it; every rank must raise instead (one all-reduce of a failure flag comes first)."""
    for rank, message in enumerate(pools(2).run(cases.failing_tile_run)):
        assert "failed computing its tiles" in message, (rank, message)


def test_tiling_on_under_one_tile_splits_by_rows(pools):
    """Catches a VAE with tiling on whose input is under one tile running whole on every rank (or on one rank while
    the others wait): diffusers does not tile it, so the row split takes it, and it equals one process."""
    want, whole = cases.under_one_tile_run()
    runs = pools(3).run(cases.under_one_tile_run)
    for got, _ in runs:
        assert np.abs(got - want).max() <= 1e-4  # the row split's GroupNorm statistics merge in another order
    assert max(work for _, work in runs) <= 1.15 / 3 * whole, [work for _, work in runs]


def test_a_loop_feeding_outputs_into_inputs_is_refused_on_every_rank(pools):
    """Catches a silently wrong decode from a tile loop (a future diffusers one) that cuts a call's input from an
    earlier call's output: in the computing pass, a rank that did not compute that output fed its placeholder on, so
    its inputs' sums differ between the passes; every rank must raise, not only that one (the others would hang in
    the next collective)."""
    for rank, message in enumerate(pools(2).run(cases.feedback_run)):
        assert "feeds a tile's output into another tile's input" in message, (rank, message)


def test_fewer_tiles_than_ranks(pools):
    """Catches ranks without a tile of their own (2 tiles at 4 ranks) breaking the exchange (an empty share, a
    gather of uneven sizes) or computing a tile anyway."""
    want, whole = _one_thread(cases.few_tiles_run)
    runs = pools(4).run(cases.few_tiles_run)
    assert all(np.array_equal(got, want) for got, _ in runs)
    assert [work for _, work in runs][2:] == [0, 0] and sum(work for _, work in runs) == whole


def test_tiles_drawing_noise_run_whole(pools):
    """Catches a decoder that injects noise (LTX's) spread over ranks: one process draws each tile's noise in turn
    from one generator, a rank computing every P-th tile would draw other noise, a plausible but different video.
    Every rank must run the tiled decode whole instead (with a warning), equal to one process."""
    want, _ = _one_thread(cases.noisy_run)
    for got, warned in pools(2).run(cases.noisy_run):
        assert warned and np.array_equal(got, want)
