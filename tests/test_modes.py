"""Input modes and configs of proven classes beyond their coverage case in `tests/zoo`: the ones diffusers' own tiny
test configurations use, which once crashed under `parallelize` with shape errors. Each is either
proven equal to its single-process output (float32, max abs err <= 1e-5) or refused on every rank with an error that
names the mode and what works instead.

`tests/test_models.py` keys its cases by class name, one per class; these are further cases of the same classes.
"""

import functools

import pytest
import torch
from tasks.modes import MODES, REFUSED, WORLDS, build, mode_refusal, mode_run


@functools.cache
def _reference(key: str) -> torch.Tensor:
    """The single-process output of mode `key`, built once for its 3 world sizes."""
    model, inputs = build(key)
    with torch.no_grad():
        return model(**inputs, return_dict=False)[0]


PARITY = [(key, world) for key in MODES for world in WORLDS]
REFUSAL = [(key, world) for key in REFUSED for world in WORLDS]


@pytest.mark.parametrize("key, world", PARITY, ids=[f"{k}-{w}" for k, w in PARITY])
def test_mode_parity(pools, key, world):
    """Catches a mode that crashes or diverges under `parallelize`: a gather placed where the forward reshapes to
    the whole image (`Transformer2DModel`'s conv projection), batched ids left whole (Flux, Bria), a broadcast
    RoPE row split (HunyuanDiT), a count of leading tokens over the whole sequence applied to one rank's chunk
    (HunyuanVideo's first-frame tokens, Stable Audio 3's memory tokens before its local conditioning)."""
    want = _reference(key)
    outs = pools(world).run(mode_run, key)
    assert all(out.shape == want.shape for out in outs)
    err = max((out - want).abs().max().item() for out in outs)
    assert err <= 1e-5, f"max abs error {err:.3g}"


@pytest.mark.parametrize("key, world", REFUSAL, ids=[f"{k}-{w}" for k, w in REFUSAL])
def test_mode_refused_on_every_rank(pools, key, world):
    """Catches a mode that `parallelize` cannot split running silently wrong, crashing with an error that does not
    name it, or failing on some ranks only (the others would hang in the next collective)."""
    words = REFUSED[key][1]
    for rank, ended in enumerate(pools(world).run(mode_refusal, key)):
        assert words in ended, f"rank {rank}: {ended}"
