"""`torch.compile(fullgraph=True)` of a parallelized transformer traces USP without a graph break and matches eager."""

import pytest
from tasks import core as cases


@pytest.mark.parametrize("model, shape", [
    ("flux", dict(height=4, width=6, text_len=8)),
    # a replicated text block, and 25 image tokens as 13 + 12: the uneven all-to-alls trace too
    ("flux", dict(height=5, width=5, text_len=7)),
    ("wan", dict(frames=3, height=8, width=8)),
])  # fmt: skip
def test_fullgraph_compile_matches_eager(pools, model, shape):
    """Catches graph breaks (fullgraph raises on any) in the rebound processor globals, the hooks, the collectives.
    aot_eager runs Dynamo and AOTAutograd (functionalized collectives) like Inductor does, without minutes of C++
    code generation on 2 cores; Inductor itself is covered by one case below and on the GPU."""
    for err, warned in pools(2).run(cases.compiled_vs_eager, model, shape, "aot_eager"):
        assert warned == []  # e.g. Dynamo bypassing an lru_cache in the traced code, once per process
        assert err == 0.0


def test_inductor_compile_matches_eager(pools):
    # Inductor fuses and reorders float32 arithmetic: reassociation differences of a few ulps.
    for err, warned in pools(2).run(cases.compiled_vs_eager, "wan", dict(frames=3, height=8, width=8), "inductor"):
        assert warned == []
        assert err <= 1e-5


def test_compile_before_any_eager_call(pools):
    """The first call of a parallelized model may be the compiled one: nothing USP sets up lazily on a first call
    (processor rebinding, the input check) may need tracing."""
    for err in pools(2).run(cases.compiled_first, "flux", dict(height=4, width=6, text_len=8)):
        assert err <= 1e-5
