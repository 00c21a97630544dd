"""LTX-2 under `parallelize`: both outputs (video and audio; `tests/test_models.py` compares the first only) equal
the single-process ones in float32 in every input mode of diffusers' own LTX-2 test and of its pipelines, or the mode
is refused on every rank with an error that names it."""

import functools

import pytest
import torch
from tasks.ltx2 import MODES, REFUSED, build, ltx2_refusal, ltx2_run

PARITY = [(key, world, 1) for key in MODES for world in (2, 3, 4)] + [
    ("case", 2, 2),
    ("ltx23", 4, 2),
    ("diffusers", 4, 2),
]
REFUSAL = [(key, world) for key, (_, worlds, _) in REFUSED.items() for world in worlds]


@functools.cache
def _reference(key: str) -> tuple[torch.Tensor, torch.Tensor]:
    model, inputs = build(key)
    with torch.no_grad():
        return model(**inputs, return_dict=False)


@pytest.mark.parametrize("key, world, ring", PARITY, ids=[f"{k}-{w}-ring{r}" for k, w, r in PARITY])
def test_ltx2_parity(pools, key, world, ring):
    """Catches audio-to-video or video-to-audio attention attending one rank's share of the other sequence (or, split
    unevenly, with another sequence's chunk sizes), a RoPE
    table left whole or split by the wrong sequence (audio, cross-attention, per-head `split` tables), a per-token
    modulation (per-token timesteps, LTX-2.3's prompt and cross-modality modulation) left whole, the audio stream
    not gathered, the keyframe marker not split, and a skipped attention (spatio-temporal guidance) taken for one
    that attended outside the processor."""
    want_video, want_audio = _reference(key)
    for video, audio in pools(world).run(ltx2_run, key, ring):
        assert video.shape == want_video.shape and audio.shape == want_audio.shape
        err = max((video - want_video).abs().max().item(), (audio - want_audio).abs().max().item())
        assert err <= 1e-5, f"max abs error {err:.3g}"


@pytest.mark.parametrize("key, world", REFUSAL, ids=[f"{k}-{w}" for k, w in REFUSAL])
def test_ltx2_refused_on_every_rank(pools, key, world):
    """Catches a mode that cannot be split (audio and video chunks of one size on some rank, IC-LoRA's whole-sequence
    mask) running
    silently wrong, or failing on some ranks only (the others would hang in the next collective)."""
    words = REFUSED[key][2]
    for rank, ended in enumerate(pools(world).run(ltx2_refusal, key)):
        assert words in ended, f"rank {rank}: {ended}"
