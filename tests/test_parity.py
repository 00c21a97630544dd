"""Parallel output equals the single-process output of the same weights and inputs (float32, max abs err <= 1e-5)."""

import pytest
import torch
from tasks import core as cases

# (model, input shape, config overrides). Chosen to cover: text sharded vs. replicated (Flux text length not divisible
# by P), batch 2 (a CFG batch), head counts that P does not divide, video token grids, and token counts that P does
# not divide (25, 35 and 35 tokens).
CASES = {
    "flux": ("flux", dict(height=4, width=6, text_len=8), {}),
    "flux-odd-text-batch2": ("flux", dict(height=6, width=6, text_len=7, batch=2), {}),
    "flux-6-heads": ("flux", dict(height=4, width=6, text_len=12), dict(num_attention_heads=6)),
    "wan": ("wan", dict(frames=3, height=8, width=8), {}),
    "wan-5-heads-batch2": ("wan", dict(frames=2, height=12, width=8, batch=2), dict(num_attention_heads=5)),
    # token counts no world size here divides: uneven all-to-alls and gather
    "flux-uneven": ("flux", dict(height=5, width=5, text_len=7), {}),
    "flux-uneven-text-split-batch2": ("flux", dict(height=5, width=7, text_len=12, batch=2), {}),
    "wan-uneven": ("wan", dict(frames=1, height=10, width=14), {}),
}
_REFERENCES: dict[str, torch.Tensor] = {}


def _reference(case: str) -> torch.Tensor:
    if case not in _REFERENCES:
        model, shape, config = CASES[case]
        _REFERENCES[case] = cases.reference(model, shape, **config)
    return _REFERENCES[case]


@pytest.mark.parametrize("mode", ["parallelize", "processor"])
@pytest.mark.parametrize("world", [2, 3, 4])
@pytest.mark.parametrize("case", list(CASES))
def test_parallel_output_equals_single_process(pools, case, world, mode):
    """Catches any mis-sharding: wrong head slices, rows returned to the wrong rank, replicated tokens counted P
    times in the softmax, RoPE or ids split differently from the tokens, a gather in the wrong order."""
    model, shape, config = CASES[case]
    want = _reference(case)
    for rank, (out, _, _) in enumerate(pools(world).run(cases.run_model, model, shape, mode, **config)):
        assert out.shape == want.shape
        err = (out - want).abs().max().item()
        assert err <= 1e-5, f"rank {rank}: max abs error {err:.3g}"


@pytest.mark.parametrize("mode", ["parallelize", "processor"])
@pytest.mark.parametrize("case", ["flux", "wan"])
def test_world_size_one_is_exact_no_op(case, mode):
    """With no process group (plain `python`), USP must compute bit for bit what the stock processors compute."""
    model, shape, config = CASES[case]
    out, collectives, warned = cases.run_model(model, shape, mode, **config)
    assert torch.equal(out, _reference(case))
    assert collectives == {} and warned == []
