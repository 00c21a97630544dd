"""Where one transformer step's time goes: host time per attention (eager) and GPU time by kind (graph replay).

    python benchmarks/breakdown.py --impl stock --out benchmarks/results/h200-x2-breakdown.json
    accelerate launch --num_processes 2 benchmarks/breakdown.py --impl usp \
        --out benchmarks/results/h200-x2-breakdown.json

Eager: forward pre/post hooks on every attention module read the host clock, so `host_us_per_attention` is the time
the host spends issuing one attention call (processor, packing, collectives, kernel launch), the quantity that bounds
a host-bound eager step. Graph: three replays of `apply_cuda_graphs` under the profiler with CUDA activity; every
kernel is classed as communication (NCCL), attention (the SDPA kernels), copy (copy and cat kernels: USP's packing
among them) or other, and `exposed_comm_ms` is the NCCL time during which no other kernel runs on the device.
Results merge into `--out` by (model, impl, world). CUDA only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import torch  # noqa: E402
from accelerate import PartialState  # noqa: E402
from run import MODELS, _over_ranks, attention_kinds, build, time_steps  # noqa: E402

import diffusers_usp  # noqa: E402

KINDS = (("comm", ("nccl",)), ("attention", ("flash", "fmha", "attention", "sdpa")), ("copy", ("copy", "cat")))


def _kind(name: str) -> str:
    name = name.lower()
    return next((kind for kind, keys in KINDS if any(k in name for k in keys)), "other")


def _union(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[list[float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def _overlap(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    """Total length of the intersection of two unions of intervals."""
    total, j = 0.0, 0
    for start, end in a:
        while j < len(b) and b[j][1] <= start:
            j += 1
        k = j
        while k < len(b) and b[k][0] < end:
            total += max(0.0, min(end, b[k][1]) - max(start, b[k][0]))
            k += 1
    return total


def eager_host(model, step, kinds: dict[str, str], steps: int) -> dict:
    """Median over steps of the host time spent inside attention modules, per call, by kind; and of a whole step's
    host time (issuing it, before the final sync)."""
    spans: list[tuple[str, float]] = []
    handles = []
    for path, kind in kinds.items():
        module = model.get_submodule(path)
        handles.append(module.register_forward_pre_hook(lambda m, a, k=kind: spans.append((k, time.perf_counter()))))
        handles.append(module.register_forward_hook(lambda m, a, o, k=kind: spans.append((k, time.perf_counter()))))
    per_kind: dict[str, list[float]] = {"self": [], "cross": []}
    step_host = []
    try:
        for _ in range(steps):
            spans.clear()
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            step()
            step_host.append((time.perf_counter() - t0) * 1e3)
            torch.cuda.synchronize()
            calls: dict[str, list[float]] = {"self": [], "cross": []}
            for (kind, start), (_, end) in zip(spans[::2], spans[1::2]):
                calls[kind].append((end - start) * 1e6)
            for kind, us in calls.items():
                if us:
                    per_kind[kind].append(statistics.median(us))
    finally:
        for h in handles:
            h.remove()
    out = {"host_ms_per_step": round(statistics.median(step_host), 2)}
    for kind, values in per_kind.items():
        if values:
            out[f"host_us_per_{kind}_attention"] = round(statistics.median(values), 1)
    return out


def graph_gpu(step, replays: int = 3) -> dict:
    """GPU time by kernel kind over `replays` graph replays, per replay, and the NCCL time no other kernel hides."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(replays):
            step()
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    by_kind: dict[str, float] = {}
    comm, compute = [], []
    for e in kernels:
        kind = _kind(e.name)
        by_kind[kind] = by_kind.get(kind, 0.0) + e.time_range.elapsed_us()
        (comm if kind == "comm" else compute).append((e.time_range.start, e.time_range.end))
    comm, compute = _union(comm), _union(compute)
    comm_us = sum(b - a for a, b in comm)
    return {
        "gpu_ms_by_kind": {k: round(v / replays / 1e3, 2) for k, v in sorted(by_kind.items())},
        "comm_ms": round(comm_us / replays / 1e3, 2),
        "exposed_comm_ms": round((comm_us - _overlap(comm, compute)) / replays / 1e3, 2),
        "kernels_per_step": len(kernels) // replays,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=list(MODELS), default="flux-dev-1024")
    p.add_argument("--impl", choices=("stock", "usp", "diffusers"), default="usp")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    state = PartialState()
    device, world = state.device, state.num_processes
    if device.type != "cuda":
        raise SystemExit("breakdown.py needs CUDA")
    model, inputs = build(MODELS[args.model], args.impl, world, device, torch.bfloat16, seed=0)
    kinds = attention_kinds(model)
    step = lambda: model(**inputs, return_dict=False)  # noqa: E731
    machine = f"{world}x {torch.cuda.get_device_name()}"
    rec = {"model": args.model, "impl": args.impl, "world": world, "machine": machine}
    with torch.no_grad():
        for _ in range(3):
            step()
        rec["eager"] = eager_host(model, step, kinds, args.steps)
        rec["eager"]["step_ms_median"] = round(statistics.median(time_steps(step, args.steps, device, world)), 2)
        diffusers_usp.apply_cuda_graphs(model)
        for _ in range(3):
            step()
        rec["graph"] = graph_gpu(step)
        rec["graph"]["step_ms_median"] = round(
            statistics.median(_over_ranks(time_steps(step, args.steps, device, world), device, world)), 2
        )
    if state.is_main_process:
        print(json.dumps(rec, indent=1), flush=True)
        if args.out:
            old = json.loads(args.out.read_text()) if args.out.exists() else {"records": []}
            key = (rec["model"], rec["impl"], rec["world"])
            old["records"] = [r for r in old["records"] if (r["model"], r["impl"], r["world"]) != key] + [rec]
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(old, indent=1) + "\n")


if __name__ == "__main__":
    main()
