"""Step caches under `parallelize` (issue #19): every rank takes the decision one process takes, so the outputs equal
one process's with the same cache config (float32, max abs err <= 1e-5), and no rank waits in a collective the others
skipped."""

import functools

import numpy as np
import pytest
import torch
from tasks import caches as cc

from diffusers_usp.caches import PATCHES
from diffusers_usp.comm import chunk_sizes
from diffusers_usp.tiny import tiny_flux_transformer


@functools.cache
def _reference(cache: str | None, contexts=("step",)) -> tuple:
    outputs, ratios = cc.calls(cache, contexts=contexts)
    return [np.asarray(o) for o in outputs], ratios


def _check(runs: list, cache: str, contexts=("step",)) -> None:
    want, want_ratios = _reference(cache, contexts)
    uncached = _reference(None, contexts)[0][-len(contexts)]  # the last step's first context, after disable_cache
    for rank, (outputs, ratios) in enumerate(runs):
        errors = [float(np.abs(g - w).max()) for g, w in zip(outputs, [*want, uncached])]
        assert len(outputs) == len(want) + 1 and max(errors) <= 1e-5, f"rank {rank}: max abs errors {errors}"
        np.testing.assert_allclose(ratios, want_ratios, rtol=1e-5, err_msg=f"rank {rank}")


def test_inputs_are_adversarial():
    """Guards the test below against inputs on which the ranks agree anyway (then it could not fail): one process
    skips the second call and computes the third, while at every world size the first rank's local statistic is below
    the threshold and the last rank's above it."""
    model, residuals = tiny_flux_transformer(), []
    model.transformer_blocks[0].register_forward_hook(
        lambda m, a, k, out: residuals.append(out[1] - k["hidden_states"]), with_kwargs=True
    )
    with torch.no_grad():
        for x in cc.inputs(model):
            model(**x, return_dict=False)
    first = residuals[0]

    def change(now, tokens=slice(None)):
        return ((now[:, tokens] - first[:, tokens]).abs().mean() / first[:, tokens].abs().mean()).item()

    assert change(residuals[1]) < cc.THRESHOLD < change(residuals[2])
    for now in residuals[1:]:
        for world in (2, 3, 4):
            last = chunk_sizes(36, world)[-1]
            assert change(now, slice(0, last)) < cc.THRESHOLD < change(now, slice(36 - last, 36)), world
    want, _ = _reference("fbc")
    uncached, _ = _reference(None)
    assert np.abs(want[1] - uncached[1]).max() > 1e-3 and np.abs(want[2] - uncached[2]).max() == 0  # skip, compute


@pytest.mark.parametrize("world", [2, 3, 4])
def test_first_block_cache_decides_alike_on_every_rank(pools, world):
    """Catches FBCHeadBlockHook deciding from this rank's tokens only: one rank skips the remaining blocks and their
    all-to-alls while another runs them, and every rank hangs in a collective until the group times out (20 s here).
    Also `disable_cache` after: the model is then exact uncached."""
    _check(pools(world).run(cc.calls, "fbc", {}), "fbc")


@pytest.mark.parametrize("world, parallel", [(2, {"ring_degree": 2}), (4, {"ring_degree": 2}), (3, {})])
def test_first_block_cache_with_a_ring_or_enabled_after(pools, world, parallel):
    """The same with ring attention (the statistic summed over ring x Ulysses ranks), and with `enable_cache` called
    after `parallelize` (the sync is installed at the next forward)."""
    _check(pools(world).run(cc.calls, "fbc", parallel, "after"), "fbc")


@pytest.mark.parametrize("contexts", [("cond_uncond",), ("cond", "uncond")], ids=["batched", "sequential"])
def test_first_block_cache_with_cfg_parallel(pools, contexts):
    """CFG parallel: a batch split between the two CFG groups decides from both halves (one process's mean is over the
    whole batch); sequential cond/uncond calls decide from the ranks of the group that computes them."""
    _check(pools(4).run(cc.calls, "fbc", {"cfg_degree": 2}, "before", contexts), "fbc", contexts)


@pytest.mark.parametrize("world", [2, 3])
def test_mag_cache_calibration_and_schedules(pools, world):
    """MagCache's calibration ratios are means over all tokens (each rank logged its own shard's); MagCache's
    inference and TaylorSeer decide by schedule and need nothing: the same outputs and ratios as one process."""
    for cache in ("mag-calibrate", "mag", "taylorseer"):
        _check(pools(world).run(cc.calls, cache, {}), cache)
    assert np.abs(_reference("mag")[0][1] - _reference(None)[0][1]).max() > 1e-3  # MagCache did skip a step


@pytest.mark.parametrize("world", [2, 3])
def test_schedule_caches_need_nothing(pools, world):
    """Pyramid Attention Broadcast and FasterCache (guidance-distilled) skip attentions by a schedule every rank
    follows alike: exact, and with no collective added."""
    for cache in ("pab", "fastercache"):
        _check(pools(world).run(cc.calls, cache, {}), cache)


@pytest.mark.parametrize(
    "cache, contexts, error",
    [
        ("pab", ("cond",), "PyramidAttentionBroadcastHook under CFG parallel"),
        ("fastercache", ("cond_uncond",), "FasterCacheBlockHook, FasterCacheDenoiserHook under CFG parallel"),
        # group 0 alone computes the third call (group 1's cond state stops there); its output is used before an
        # uncond call, so the fifth runs on both groups
        ("fbc", ("cond", "uncond", "cond", "uncond", "cond"), "keeps each branch's state on the group that computes"),
    ],
)
def test_caches_cfg_parallel_cannot_keep_exact_are_refused_on_every_rank(pools, cache, contexts, error):
    """Catches a cache under CFG parallel that silently differs from one process: PAB counts every call of its
    attention whatever the branch, FasterCache splits the CFG batch itself, and a per-branch state left stale on
    the group that did not compute the branch."""
    for message in pools(2).run(cc.refused_under_cfg, cache, contexts):
        assert error in message, message


@pytest.mark.parametrize("world", [2, 3])
def test_sea_cache_on_wan_needs_nothing(pools, world):
    """SeaCache's Wan indicator is the full latent every rank is given (filtered before the split), so every rank
    takes one process's decision with no collective: a guided tiny Wan pipeline equals one process's, which does
    skip steps at this threshold."""
    want, uncached = cc.sea_cache_wan(1.0, parallel=False), cc.sea_cache_wan(None, parallel=False)
    assert np.abs(want - uncached).max() > 1e-2  # the cache skipped something
    for image in pools(world).run(cc.sea_cache_wan, 1.0):
        assert np.abs(image - want).max() <= 1e-5


def test_private_names_exist():
    """A diffusers upgrade that renames a method `diffusers_usp.caches` replaces fails here, by name."""
    for cls, (name, _, _) in PATCHES.items():
        assert callable(getattr(cls, name, None)), f"{cls.__name__}.{name}"
