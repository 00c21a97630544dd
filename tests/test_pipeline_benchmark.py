"""`benchmarks/pipeline.py`: its tiny CPU path end to end, and its full-size workloads' models built on the meta device
with the parameter counts of the released checkpoints (the GPU run it prepares cannot be made here)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("pipeline_benchmark", ROOT / "benchmarks" / "pipeline.py")
bench = sys.modules["pipeline_benchmark"] = importlib.util.module_from_spec(_spec)  # dataclasses look it up there
_spec.loader.exec_module(bench)


def test_tiny_generation_stages(tmp_path):
    """Catches a stage that is not timed (the decode timer not reached by the pipeline), a mode that does not run,
    a step override that is not applied or that overwrites the default run's record, and a results file that is not
    written."""
    out = tmp_path / "p.json"
    bench.main(["--tiny", "--workloads", "tiny-flux", "--repeat", "0", "--out", str(out)])
    bench.main(
        ["--tiny", "--workloads", "tiny-flux", "--repeat", "0", "--steps", "1", "--modes", "usp", "--out", str(out)]
    )
    records = json.loads(out.read_text())["records"]
    # `--steps` overrides the workload's and is part of a record's key: the 1-step run is merged beside the 2-step ones
    assert {(r["mode"], r["vae_split"], r["steps"]) for r in records} == {
        ("stock", False, 2),
        ("usp", True, 2),
        ("usp", True, 1),
    }
    for r in records:
        assert all(r["stages"][s]["s"] > 0 for s in ("prompt", "denoise", "vae_decode", "total"))
    assert "| tiny-flux | 2 | usp | 1 | True | False |" in out.with_suffix(".md").read_text()


# billions of parameters: (transformer, text encoders together)
SIZES = {"wan": (14.29, 5.68), "flux": (11.90, 4.88), "hunyuan_video": (12.82, 7.63)}


@pytest.mark.parametrize("family", sorted(SIZES))
def test_full_size_models_match_the_released_sizes(family):
    """Catches a full-size config written wrong (a layer count, a width): the GPU benchmark would time another model."""
    name = next(n for n, w in bench.WORKLOADS.items() if w.family == family and not w.tiny)
    pipe, encode = bench.build(bench.WORKLOADS[name], torch.device("meta"), torch.bfloat16)
    count = lambda m: sum(p.numel() for p in m.parameters()) / 1e9  # noqa: E731
    encoders = [v for v in encode.__closure__ or () if isinstance(v.cell_contents, torch.nn.Module)]
    got = (count(pipe.transformer), sum(count(c.cell_contents) for c in encoders))
    assert got == pytest.approx(SIZES[family], rel=0.02), got
