"""LTX-2 under `parallelize`: both outputs (video and audio; `tests/test_models.py` compares the first only) equal
the single-process ones in float32 in every input mode of diffusers' own LTX-2 test and of its pipelines, or the mode
is refused on every rank with an error that names it."""

import functools

import pytest
import torch
from tasks.ltx2 import MODES, REFUSED, build, ltx2_refusal, ltx2_run, two_sequence_core

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


CORE = [(2, 1), (3, 1), (4, 1), (4, 2), (4, 4)]


@pytest.mark.parametrize("world, ring", CORE, ids=[f"{w}-ring{r}" for w, r in CORE])
def test_two_sequence_attention_core(pools, world, ring):
    """Catches the exchange of two sequences mixing up their chunks: uneven lengths of both (13 queries, 7 keys),
    GQA (4 query heads, 2 key/value heads), head counts the ranks do not divide, and key/value blocks travelling a
    ring of 2 or 4 (whose sizes differ from the query blocks')."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, n, h, 8, generator=g) for n, h in ((13, 4), (7, 2), (7, 2)))
    want = torch.nn.functional.scaled_dot_product_attention(
        *(x.transpose(1, 2) for x in (q, k, v)), enable_gqa=True
    ).transpose(1, 2)
    for out in pools(world).run(two_sequence_core, ring):
        assert (out - want).abs().max().item() <= 1e-5
