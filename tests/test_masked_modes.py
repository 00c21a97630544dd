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
    the unscaled (non-proportional) path, or whole-mask prompts where every sample keeps all its text."""
    want = _reference(key)
    outs = pools(world).run(masked_mode_run, key, ring)
    assert all(out.shape == want.shape for out in outs)
    err = max((out - want).abs().max().item() for out in outs)
    assert err <= 1e-5, f"max abs error {err:.3g}"
