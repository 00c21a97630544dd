"""The benchmark harness end to end on CPU: `benchmarks/run.py` at world 2 and 1 into one JSON, then `report.py`.

A smoke test, not a timing assertion: CPU step times say nothing about a GPU. What it pins down is what the harness
reports: every expected record, positive times, collectives per attention counted from profiler events, and the
merge of several runs into one file.
"""

import json
from pathlib import Path

import pytest
import torch
from tasks import bench

RUN = ["--models", "tiny-flux", "tiny-wan", "--modes", "eager", "--warmup", "1", "--repeat", "2"]


@pytest.fixture(scope="module")
def results(pools, tmp_path_factory) -> Path:
    """World 2 (usp; stock is skipped there) on the gloo pool's ranks, whose process group `run.py`'s `PartialState`
    takes as `accelerate launch`'s, then world 1 (stock and usp) in this process, merged into the same file."""
    out = tmp_path_factory.mktemp("bench") / "cpu.json"
    printed = pools(2).run(bench.run, [*RUN, "--impls", "stock", "usp", "--out", str(out)])
    assert "skip tiny-flux stock world=2 eager" in printed[0]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as torchrun sets it: tiny models on a busy CI machine stall on spinning threads
    try:
        bench.run([*RUN, "--impls", "stock", "usp", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    return out


def test_records_merged_with_positive_times(results):
    """Catches a run overwriting the file instead of merging into it, and records without timings."""
    data = json.loads(results.read_text())
    keys = {(r["model"], r["impl"], r["world"], r["mode"]) for r in data["records"]}
    assert keys == {(m, i, w, "eager") for m in ("tiny-flux", "tiny-wan") for i, w in
                    (("stock", 1), ("usp", 1), ("usp", 2))}  # fmt: skip
    assert not data["errors"]
    for r in data["records"]:
        assert r["step_ms_median"] > 0 and len(r["step_ms_all"]) == 2 and all(t > 0 for t in r["step_ms_all"])
        assert r["compiled"] is False


def test_usp_collectives_per_attention(results):
    """Catches the headline claim regressing (separate Q/K/V all-to-alls, an all-to-all on Wan's cross-attention)
    and the harness miscounting: 2 per self-attention, 0 per cross-attention, only the output gather outside."""
    data = json.loads(results.read_text())
    usp2 = {r["model"]: r["collectives_per_forward"] for r in data["records"] if r["impl"] == "usp" and r["world"] == 2}
    for model, coll in usp2.items():
        assert coll["per_self_attention"] == {"all_to_all": 2, "other": 0}, model
        assert coll["outside_attention"] == {"all_to_all": 0, "other": 1}, model  # the all-gather after proj_out
    assert usp2["tiny-flux"]["per_cross_attention"] is None  # Flux has joint attention only
    assert usp2["tiny-wan"]["per_cross_attention"] == {"all_to_all": 0, "other": 0}
    assert usp2["tiny-wan"]["attention_calls"] == {"self": 2, "cross": 2}
    assert data["collectives"] == {"self_attention": 2, "cross_attention": 0}
    for r in data["records"]:
        if r["world"] == 1:  # a group of one exchanges nothing
            assert r["collectives_per_forward"]["all_to_all"] == r["collectives_per_forward"]["other"] == 0


def test_report_writes_markdown_and_plot(results, tmp_path):
    bench.load("report").main([str(results), "--out-dir", str(tmp_path)])
    md = (tmp_path / "cpu.md").read_text()
    assert "| tiny-wan | usp | 2 | eager |" in md and "| tiny-flux | stock | 1 | eager | " in md
    pytest.importorskip("matplotlib")  # the table needs only the standard library; the plot needs matplotlib
    assert (tmp_path / "cpu.png").stat().st_size > 0


def test_merge_replaces_same_key_and_keeps_others():
    """A rerun of one (model, impl, world, mode) must replace its record, keep every other, and drop an error entry
    that a good record now covers."""
    report = bench.load("report")
    rec = lambda model, ms, world=1: {"model": model, "impl": "usp", "world": world, "mode": "eager",  # noqa: E731
                                      "step_ms_median": ms}  # fmt: skip
    old = {"machine": "a", "records": [rec("x", 1.0), rec("y", 2.0)], "errors": [{**rec("z", 0), "error": "boom"}]}
    new = {"machine": "b", "records": [rec("x", 3.0), rec("z", 4.0, world=1)], "errors": []}
    merged = report.merge(old, new)
    assert {(r["model"], r["step_ms_median"]) for r in merged["records"]} == {("x", 3.0), ("y", 2.0), ("z", 4.0)}
    assert merged["errors"] == [] and merged["machine"] == "b"


def test_weights_benchmark_tiny_at_2_processes(pools, tmp_path):
    """`benchmarks/weights.py --tiny` (the GPU run's path: meta device, sharded there, materialized after) at 2
    processes. Catches a path that materializes whole weights on every rank (stored bytes not halved) or that
    breaks between sharding on the meta device and the first forward."""
    out = tmp_path / "weights.json"
    pools(2).run(bench.weights, ["--model", "flux2-dev", "--tiny", "--steps", "2", "--out", str(out)])
    whole, sharded = json.loads(out.read_text())
    assert (whole["shard_weights"], sharded["shard_weights"]) == (False, True)
    assert sharded["stored_gib"] <= whole["stored_gib"] * (1 / 2 + 0.05)
    assert all(t > 0 for r in (whole, sharded) for t in r["times_ms"])
