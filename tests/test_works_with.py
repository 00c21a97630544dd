"""What works with `parallelize` (issue #19): each feature users stack on a pipeline is exact against one process with
the same feature (float32, max abs err <= 1e-5) at 2 and 3 ranks, or refused on every rank. `docs/works_with.md` is
generated from these results: `python -m pytest tests/test_works_with.py --update-works-with-table`."""

import functools
from pathlib import Path

import numpy as np
import pytest
from tables import check_table
from tasks import works_with as wc

TABLE = Path(__file__).resolve().parents[1] / "docs" / "works_with.md"
WORLDS = (2, 3)
RESULTS: dict[tuple[str, int], float | str] = {}

# Rows measured here: (feature, what is checked, case).
MEASURED = [
    ("LoRA (peft)", "`add_adapter` before and after `parallelize`, `set_adapters` with a weight, `fuse_lora`, "
     "`unfuse_lora`", "lora"),
    ("`fuse_qkv_projections`", "before `parallelize`", "fuse_qkv"),
    ("`fuse_qkv_projections`", "after `parallelize`", "fuse_qkv_after"),
    ("layerwise casting", "fp8 (`float8_e4m3fn`) storage, float32 compute, before and after `parallelize`",
     "layerwise_casting"),
    ("torchao quantization", "int8 weight-only (`Int8WeightOnlyConfig`, CPU) before `parallelize`", "torchao_int8"),
    ("group offloading", "block level, before and after `parallelize` (CPU onload: the hooks' semantics, not the "
     "copies)", "group_offload"),
    ("moves and reloads", "`.to(float64)` after `parallelize`, a shape that changes between calls, `save_pretrained` "
     "after `parallelize` (reloaded), `remove_parallelism` then `parallelize`", "moves_and_shapes"),
    ("`callback_on_step_end`", "a tiny Flux pipeline whose callback changes the latents alike on every rank",
     "callback_on_step_end"),
    ("`compile_repeated_blocks`", "`fullgraph=True` after `parallelize`, two calls (Dynamo's `eager` backend on CPU; "
     "Inductor on GPU is measured in benchmarks/, not tested)", "compile_repeated_blocks"),
]  # fmt: skip
# Rows proven by other tests, which the table points to.
ELSEWHERE = [
    ("step caches", "exact at 2, 3 and 4 ranks, ring and CFG parallel: First Block Cache, MagCache (and its "
     "calibration), TaylorSeer, Pyramid Attention Broadcast, FasterCache, SeaCache (Wan); PAB and FasterCache refused "
     "with `cfg_degree=2`", "tests/test_caches.py"),
    ("`callback_on_step_end` on one rank", "changing one rank's latents raises on every rank at the next forward",
     "tests/test_inputs.py"),
    ("ControlNets", "Flux (plain and union), SD3, Qwen-Image: exact, parallelized with the transformer; others run "
     "whole", "tests/test_pipeline.py, tests/test_models.py"),
    ("IP-Adapters", "loaded before `parallelize`: exact; a processor set after it: refused",
     "tests/test_routing.py"),
    ("`torch.compile`", "the whole transformer with `fullgraph=True`, also as its first call", "tests/test_compile.py"),
    ("`torch.compile` with `cfg_degree=2`", "the whole transformer with `fullgraph=True`: refused, naming "
     "`compile_repeated_blocks`", "tests/test_cfg.py"),
    ("`apply_cuda_graphs`", "tested on GPU only: replays equal eager, also with `cfg_degree=2`", "tests/test_cuda.py"),
    ("model CPU offload", "not tested: `enable_model_cpu_offload` needs an accelerator", ""),
    ("torchao fp8", "not tested: needs a GPU", ""),
]  # fmt: skip


@functools.cache
def _reference(case: str):
    return wc.ROWS[case](False)


@pytest.mark.parametrize("world", WORLDS)
def test_features_equal_one_process(pools, world):
    """Catches a feature that changes the modules `parallelize` wraps (LoRA layers, fused projections, casting or
    offloading hooks, quantized weights) in a way that runs on this rank's tokens only, or that breaks when added
    after `parallelize`: each output against the same feature in one process, or a refusal on every rank."""
    cases = [case for *_, case in MEASURED]
    runs = pools(world).run(wc.rows, cases)
    failures = []
    for case in cases:
        want = _reference(case)
        got = [run[case] for run in runs]
        if isinstance(got[0], str):  # refused: the same error on every rank
            assert all(g == got[0] for g in got), got
            RESULTS[(case, world)] = "refused: " + got[0]
            continue
        err = max(float(np.abs(g - w).max()) for run in got for g, w in zip(run, want, strict=True))
        RESULTS[(case, world)] = err
        if err > 1e-5:
            failures.append(f"{case}: max abs error {err:.3g}")
    assert not failures, failures


def _table() -> str:
    rows = ["| feature | what | status | max abs error (2, 3 ranks) | test |", "|---|---|---|---|---|"]
    for feature, what, case in MEASURED:
        results = [RESULTS[(case, w)] for w in WORLDS]
        if isinstance(results[0], str):
            status, err = results[0], ""
        else:
            status, err = "exact", f"{max(results):.1e}"
        rows.append(f"| {feature} | {what} | {status} | {err} | tests/test_works_with.py (`{case}`) |")
    for feature, what, test in ELSEWHERE:
        rows.append(f"| {feature} | {what} | {'see test' if test else 'not tested'} | | {test} |")
    head = (
        "# What works with `parallelize`\n\nGenerated by `tests/test_works_with.py` (`python -m pytest "
        "tests/test_works_with.py --update-works-with-table`); do not edit by hand. *Exact* means: a tiny "
        "random-weight Flux model with the feature, run under `diffusers_usp.parallelize` on CPU with gloo at 2 and "
        "3 processes, equals the same model with the same feature in one process, in float32 (max abs error "
        "≤ 1e-5). *Refused* means every rank raises with the message shown.\n\n"
    )
    return head + "\n".join(rows) + "\n"


def test_works_with_table_is_current(request):
    """Fails if `docs/works_with.md` is stale: a row added or dropped, or a status changed."""
    missing = [(case, w) for *_, case in MEASURED for w in WORLDS if (case, w) not in RESULTS]
    if missing:
        pytest.skip(f"{len(missing)} cases did not run (e.g. {missing[0]}); run the whole file")
    check_table(request, TABLE, _table(), "--update-works-with-table", measured_column=4)
