"""Input modes of the classes whose masks are built per call (HunyuanVideo 1.5's per-query padding mask, LuminaNext's
expanded mask and proportional attention, Mochi's per-sample valid text): diffusers' own test configurations and
inputs (batch 1 and 2, nothing padded, lengths that 3 does not divide) and the modes the coverage cases leave out,
each equal to its single-process output (float32, max abs err <= 1e-5)."""

import functools

import pytest
import torch
from tasks.masked_modes import MODES, build, masked_mode_run

# (key, world, ring degree): 3 ranks for lengths it does not divide; a ring where a mode adds a new layout.
RUNS = [
    ("hv15-diffusers-test", 3, 1),  # 64 video tokens over 3 ranks, 13 replicated text tokens
    ("hv15-image-to-video", 2, 1),  # valid image tokens, text sharded
    ("hv15-image-to-video", 4, 2),
    ("lumina-next-diffusers-test", 3, 1),  # 3 query heads, 1 KV head, 64 patches over 3 ranks
    ("lumina-next-no-proportional-attention", 2, 1),
    ("lumina-next-uneven-proportional-attention", 3, 1),
    ("mochi-diffusers-test", 3, 1),  # 128 video tokens over 3 ranks, batch 2
    ("mochi-diffusers-test", 2, 2),
]
assert {key for key, _, _ in RUNS} == set(MODES)


@functools.cache
def _reference(key: str) -> torch.Tensor:
    model, inputs = build(key)
    with torch.no_grad():
        return model(**inputs, return_dict=False)[0]


@pytest.mark.parametrize("key, world, ring", RUNS, ids=[f"{k}-{w}-ring{r}" for k, w, r in RUNS])
def test_masked_mode_parity(pools, key, world, ring):
    """Catches a mode of these classes that crashes or diverges under `parallelize`: an uneven split of a sequence
    whose mask is built per rank, image tokens made valid (image-to-video), GQA with heads that 3 does not divide,
    the unscaled (non-proportional) path, a proportional scale from uneven chunks, or whole-mask prompts where every
    sample keeps all its text."""
    want = _reference(key)
    outs = pools(world).run(masked_mode_run, key, ring)
    assert all(out.shape == want.shape for out in outs)
    err = max((out - want).abs().max().item() for out in outs)
    assert err <= 1e-5, f"max abs error {err:.3g}"


def test_replicated_subset_longer_than_the_replicated_block_is_refused_on_every_rank(pools):
    """Catches a joint call with more tokens than this rank's sharded ones plus the whole replicated text being
    split at a wrong boundary (its extra tokens taken for text) instead of refused by every rank."""
    from tasks.masked_modes import replicated_subset_overflow

    for ended in pools(2).run(replicated_subset_overflow):
        assert "at most the 3 replicated ones" in ended, ended


def test_attention_module_without_set_processor_is_wrapped_and_restored():
    """Catches an attention module with a `processor` but no `set_processor` (Mochi's `MochiAttention`) left out of
    `parallelize`: with several ranks its processor would attend this rank's tokens only, with no error."""
    from diffusers_usp import USPProcessor, parallelize, remove_parallelism

    model, _ = build("mochi-diffusers-test")
    modules = [m for m in model.modules() if type(m).__name__ == "MochiAttention"]
    originals = [m.processor for m in modules]
    parallelize(model)
    assert modules and all(
        isinstance(m.processor, USPProcessor) and m.processor.role.mode == "sharded" for m in modules
    )
    remove_parallelism(model)
    assert all(m.processor is p for m, p in zip(modules, originals))
