"""Time one transformer forward: stock diffusers, diffusers_usp, and diffusers' native Ulysses, per world size and mode.

Full-size architectures get seeded random weights built on the device (nothing is downloaded; step time does not depend
on weight values). Every record is merged into `--out` as soon as it is measured, so a run cut short keeps what it
finished, and several runs (world sizes, models) fill one file. Commands: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: use this checkout's diffusers_usp (installed or not) and report.py
    sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import diffusers  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from accelerate import PartialState  # noqa: E402
from diffusers import ContextParallelConfig, FluxTransformer2DModel, WanTransformer3DModel  # noqa: E402
from packing import measure_packing  # noqa: E402
from report import MODES, merge_file, short_table  # noqa: E402

import diffusers_usp  # noqa: E402
from diffusers_usp import tiny  # noqa: E402
from diffusers_usp.plans import plan_for  # noqa: E402

Step = Callable[[], object]


@dataclass(frozen=True)
class ModelSpec:
    """One workload: `family` ("flux" or "wan") picks the class and the `diffusers_usp.tiny` input helper, `shape` is
    that helper's keyword arguments, `config` the constructor's (a `tiny` model uses `diffusers_usp.tiny`'s)."""

    family: str
    heads: int
    shape: dict
    config: dict = field(default_factory=dict)
    tiny: bool = False

    @property
    def tokens(self) -> tuple[int, int]:
        """(image or video tokens, text tokens); Wan patches (1, 2, 2)."""
        s = self.shape
        if self.family == "flux":
            return s["height"] * s["width"], s["text_len"]
        return s["frames"] * (s["height"] // 2) * (s["width"] // 2), s["text_len"]


FLUX_DEV = dict(guidance_embeds=True)  # FLUX.1-dev: the class default (19 + 38 blocks, 24 heads x 128) + guidance
WAN_14B = dict(
    patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128, in_channels=16, out_channels=16,
    text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
    eps=1e-6,
)  # fmt: skip
MODELS = {
    # 1024² px -> 128² VAE latents -> 64² packed 2x2 tokens = 4096; 2048² -> 16384. T5 text: 512 tokens.
    "flux-dev-1024": ModelSpec("flux", 24, dict(height=64, width=64, text_len=512), FLUX_DEV),
    "flux-dev-2048": ModelSpec("flux", 24, dict(height=128, width=128, text_len=512), FLUX_DEV),
    # 81 frames -> 21 latent frames; 480p -> 60 x 104 latents -> 21 * 30 * 52 = 32,760 tokens; 720p -> 75,600.
    "wan2.1-14b-480p": ModelSpec("wan", 40, dict(frames=21, height=60, width=104, text_len=512), WAN_14B),
    "wan2.1-14b-720p": ModelSpec("wan", 40, dict(frames=21, height=90, width=160, text_len=512), WAN_14B),
    "tiny-flux": ModelSpec("flux", 4, dict(height=16, width=16, text_len=16), tiny=True),
    "tiny-wan": ModelSpec("wan", 4, dict(frames=4, height=16, width=16, text_len=16), tiny=True),
}


IMPLS = ("stock", "usp", "usp-ring2", "diffusers", "diffusers-ring2")


def ring_degree(impl: str) -> int:
    """`usp-ring2` -> 2: the ring degree an impl name asks for (1 without a `-ring` suffix)."""
    return int(impl.partition("-ring")[2] or 1)


def not_applicable(spec: ModelSpec, impl: str, mode: str, world: int, device: torch.device) -> str | None:
    """Why this combination is not measured, or `None`."""
    sharded, text = spec.tokens
    if world % ring_degree(impl):
        return f"{impl} needs a multiple of {ring_degree(impl)} ranks"
    if impl == "stock" and world > 1:
        return "stock is the single-GPU baseline (world 1 only)"
    native = impl.startswith("diffusers")
    if native and world < 2:
        return "diffusers' ContextParallelConfig needs a degree >= 2"
    if native and device.type != "cuda":
        return "diffusers 0.42.1 enable_parallelism takes rank % torch.accelerator.device_count(), which is 0 on CPU"
    if native and (sharded % world or text % world or spec.heads % (world // ring_degree(impl))):
        return (
            f"diffusers' {impl} needs {world} to divide {sharded} tokens and {text} text tokens, and its Ulysses "
            f"degree the {spec.heads} heads"
        )
    if impl.startswith("usp") and sharded % world:
        return f"usp needs {world} to divide the {sharded} image/video tokens"
    if mode in GRAPHED and device.type != "cuda":
        return "CUDA graphs need a CUDA device"
    return None


def build(spec: ModelSpec, impl: str, world: int, device: torch.device, dtype: torch.dtype, seed: int):
    """The model with seeded random weights (the same on every rank) on `device`, `impl` applied, and its inputs."""
    flux = spec.family == "flux"
    if spec.tiny:
        model = (tiny.tiny_flux_transformer if flux else tiny.tiny_wan_transformer)(seed=seed, dtype=dtype).to(device)
    else:
        torch.manual_seed(seed)
        with device:  # initialise on the GPU: 12-14B parameters take minutes to initialise on a CPU
            model = (FluxTransformer2DModel if flux else WanTransformer3DModel)(**spec.config)
        keep = model._keep_in_fp32_modules or []
        for name, param in model.named_parameters():
            # As from_pretrained(dtype=...) does: the class's fp32 modules (Wan's norms, time embedder) stay float32.
            param.data = param.data.to(torch.float32 if any(m in name.split(".") for m in keep) else dtype)
    model.eval()
    if device.type == "cuda":
        torch.cuda.empty_cache()  # hand back the float32 staging blocks of the initialisation
    ring = ring_degree(impl)
    if impl.startswith("usp"):
        diffusers_usp.parallelize(model, ring_degree=ring)
    elif impl.startswith("diffusers"):
        # diffusers' documented path: the default "native" (SDPA) backend supports context parallelism, and the
        # config builds its own (ring, ulysses) device mesh over the default process group.
        ulysses = world // ring
        if ring > 1:  # its ring merges by LSE, which the default native backend does not return
            model.set_attention_backend("_native_flash")
        config = ContextParallelConfig(
            ring_degree=ring if ring > 1 else None, ulysses_degree=ulysses if ulysses > 1 else None
        )
        model.enable_parallelism(config=config)
    make_inputs = tiny.flux_transformer_inputs if flux else tiny.wan_transformer_inputs
    return model, make_inputs(model, seed=seed + 1, **spec.shape)  # drawn on the CPU: identical on every rank


def attention_kinds(model: torch.nn.Module) -> dict[str, str]:
    """Attention module path -> "self" (sharded) or "cross" (run locally on replicated K/V: cross-attention to text).
    Classified by the model's USP plan, whatever the impl."""
    plan = plan_for(model)
    return {
        path: "cross" if plan.is_cross(path) else "self"
        for path in (name.removesuffix(".processor") for name in model.attn_processors)
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _over_ranks(values: list[float], device: torch.device, world: int, op=dist.ReduceOp.MAX) -> list[float]:
    """Elementwise reduction over ranks; by default the maximum, since a parallel step ends with its slowest rank."""
    if world == 1 or not values:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=op)
    return t.tolist()


def time_steps(step: Step, n: int, device: torch.device, world: int) -> list[float]:
    """Milliseconds of each of `n` calls (CUDA events on a GPU). Ranks start each step together, so a rank still
    finishing the previous step does not show up as collective wait in the next."""
    times = []
    for _ in range(n):
        if world > 1:
            dist.barrier()
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            step()
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def count_collectives(step: Step, device: torch.device, model: torch.nn.Module | None = None,
                      kinds: dict[str, str] | None = None) -> dict:  # fmt: skip
    """Collectives of one forward from profiler events (`nccl:*`, `gloo:*`), split into all-to-alls and others.

    With `model`, each attention call runs inside a `bench::<kind>` profiler range and every collective is attributed
    to the range it starts in (an NCCL event may end later, on another thread); without (compiled regions, where
    hooks would be traced), only totals.
    """
    handles = []
    for path, kind in (kinds or {}).items() if model is not None else ():
        module, open_ranges = model.get_submodule(path), []
        enter = lambda m, a, r=open_ranges, n=f"bench::{kind}": r.append(  # noqa: E731
            torch.autograd.profiler.record_function(n).__enter__()
        )
        leave = lambda m, a, o, r=open_ranges: r.pop().__exit__(None, None, None)  # noqa: E731
        handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    try:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            step()
            _sync(device)  # NCCL events end when their GPU work does
    finally:
        for handle in handles:
            handle.remove()
    events = list(prof.events())
    spans = [(e.time_range.start, e.time_range.end, e.name[7:]) for e in events if e.name.startswith("bench::")]
    by_name: dict[str, int] = {}
    where = {kind: {"all_to_all": 0, "other": 0} for kind in ("self", "cross", "outside")}
    for e in (e for e in events if e.name.startswith(("nccl:", "gloo:"))):
        by_name[e.name] = by_name.get(e.name, 0) + 1
        kind = next((k for start, end, k in spans if start <= e.time_range.start <= end), "outside")
        where[kind]["all_to_all" if "all_to_all" in e.name or "alltoall" in e.name else "other"] += 1
    a2a = sum(w["all_to_all"] for w in where.values())
    result = {"all_to_all": a2a, "other": sum(by_name.values()) - a2a, "by_name": by_name}
    if model is not None:
        calls = {kind: sum(1 for *_, k in spans if k == kind) for kind in ("self", "cross")}
        whole = lambda x: int(x) if x == int(x) else round(x, 3)  # noqa: E731
        result.update(attention_calls=calls, outside_attention=where["outside"])
        for kind, n in calls.items():  # None where the model has no attention of that kind
            result[f"per_{kind}_attention"] = {k: whole(v / n) for k, v in where[kind].items()} if n else None
    return result


COMPILED = ("compiled", "compiled_graph")
GRAPHED = ("graph", "compiled_graph")


def compile_model(model: torch.nn.Module, step: Step, rec: dict, device: torch.device, world: int) -> None:
    """Regional compilation, as a user runs it: `compile_repeated_blocks(fullgraph=True)`, then one timed first call
    (`compile_s`). If `fullgraph=True` fails it retries without and records `fullgraph_error`."""
    if not getattr(model, "_repeated_blocks", None):
        raise ValueError(f"{type(model).__name__} has no `_repeated_blocks` for compile_repeated_blocks()")
    # One eager forward first: it runs USP's input check (a host sync, a graph break under compile) eagerly.
    step()
    for fullgraph in (True, False):  # a graph break fails the same way on every rank, before any collective
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        model.compile_repeated_blocks(fullgraph=fullgraph)
        try:
            rec["compile_s"] = max(_over_ranks(time_steps(step, 1, device, world), device, world)) / 1e3
            break
        except Exception as err:
            if not fullgraph:
                raise
            rec["fullgraph_error"] = f"{type(err).__name__}: {err}"[:1000]
    rec["fullgraph"] = fullgraph
    model._bench_compiled = True


def measure(model: torch.nn.Module, inputs: dict, mode: str, kinds: dict[str, str], args: argparse.Namespace,
            device: torch.device, world: int) -> dict:  # fmt: skip
    """One record: `warmup` untimed steps, `repeat` timed steps, then one profiled step for the collectives.

    `graph` and `compiled_graph` run the shipped `diffusers_usp.apply_cuda_graphs` (on every impl: it needs no
    parallelism), whose first call warms up and captures (`capture_s`); it is removed after the record. Compiling
    changes the model in place, so `compiled_graph` reuses the compilation of `compiled` when both run.
    """
    rec: dict = {"compiled": mode in COMPILED, "compile_method": None, "compile_s": None}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step = lambda: model(**inputs, return_dict=False)  # noqa: E731
    with torch.no_grad():
        if mode in COMPILED:
            rec["compile_method"] = "compile_repeated_blocks"
            if not getattr(model, "_bench_compiled", False):
                compile_model(model, step, rec, device, world)
        if mode in GRAPHED:
            if mode == "graph":  # from an eager forward: graph replays emit no profiler events
                rec["collectives_per_forward"] = count_collectives(step, device, model, kinds)
            diffusers_usp.apply_cuda_graphs(model)
            rec["capture_s"] = max(_over_ranks(time_steps(step, 1, device, world), device, world)) / 1e3
        warm = time_steps(step, args.warmup, device, world)
        times = _over_ranks(time_steps(step, args.repeat, device, world), device, world)
        if mode not in GRAPHED:  # hooks inside compiled regions would be traced: totals only there
            marks = (model, kinds) if mode == "eager" else ()
            rec["collectives_per_forward"] = count_collectives(step, device, *marks)
        if mode == "compiled":  # one per block class, +1 per hooked block (USP's Wan blocks.0); more: recompiles
            rec["dynamo_graphs"] = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        if mode in GRAPHED:
            diffusers_usp.remove_cuda_graphs(model)
    peak = None
    if device.type == "cuda":
        peak = max(_over_ranks([torch.cuda.max_memory_allocated(device) / 1e9], device, world))
    rec.update(step_ms_median=statistics.median(times), step_ms_min=min(times), peak_mem_gb=peak,
               step_ms_all=[round(t, 3) for t in times], warmup_ms=[round(t, 3) for t in warm])  # fmt: skip
    return rec


def _nccl_version() -> str | None:
    try:
        version = torch.cuda.nccl.version()  # a tuple such as (2, 28, 3); an int in older torch
    except Exception:  # a build without NCCL
        return None
    return ".".join(map(str, version)) if isinstance(version, tuple) else str(version)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=["flux-dev-1024"])
    p.add_argument("--impls", nargs="+", choices=IMPLS, default=["stock", "usp"])
    p.add_argument("--modes", nargs="+", choices=MODES, default=["eager"], help="always run as eager, graph, compiled")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before the timed ones")
    p.add_argument("--repeat", type=int, default=10, help="timed steps; the median is reported")
    p.add_argument("--out", type=Path, help="results JSON to merge into (rank 0 writes it after every record)")
    p.add_argument("--machine", help='e.g. "1x NVIDIA H200" (default: world size and device name)')
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--packing", choices=("auto", "on", "off"), default="auto", help="packing bandwidth (auto: on CUDA)")
    args = p.parse_args(argv)
    if args.repeat < 1 or args.warmup < 0:
        p.error("--repeat must be at least 1 and --warmup at least 0")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    state = PartialState(cpu=not torch.cuda.is_available())
    device, world, main_rank = state.device, state.num_processes, state.is_main_process
    cuda = device.type == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    log = lambda *a: print(*a, flush=True) if main_rank else None  # noqa: E731
    now = lambda: datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")  # noqa: E731
    name = torch.cuda.get_device_name(device) if cuda else f"CPU ({platform.machine()})"
    new: dict = {"machine": args.machine or f"{world}x {name}", "date": now(), "torch": torch.__version__,
                 "diffusers": diffusers.__version__, "cuda": torch.version.cuda, "records": [], "errors": [],
                 "nccl": _nccl_version() if cuda else None}  # fmt: skip
    write = lambda: merge_file(args.out, new) if main_rank and args.out else None  # noqa: E731
    if args.packing == "on" or (args.packing == "auto" and cuda):
        if main_rank:  # one device's copies; the other ranks wait
            new["packing"] = measure_packing(device, dtype, copy_bytes=2 << 30 if cuda else 256 << 20)
            log("packing:", json.dumps(new["packing"]))
        state.wait_for_everyone()
        write()
    for model_name, impl in ((m, i) for m in args.models for i in args.impls):
        spec, base = MODELS[model_name], {"model": model_name, "impl": impl, "world": world}
        reasons = {m: not_applicable(spec, impl, m, world, device) for m in MODES if m in args.modes}
        for mode, reason in reasons.items():
            if reason:
                log(f"skip {model_name} {impl} world={world} {mode}: {reason}")
        model = inputs = None
        for mode in (m for m, reason in reasons.items() if reason is None):
            try:
                if model is None:  # built once for all its modes (a failed build is retried by the next mode)
                    t0 = time.perf_counter()
                    model, inputs = build(spec, impl, world, device, dtype, args.seed)
                    kinds, build_s = attention_kinds(model), time.perf_counter() - t0
                    log(f"built {model_name} for {impl} in {build_s:.1f} s")
                rec = measure(model, inputs, mode, kinds, args, device, world)
            except Exception as err:
                print(f"[rank {state.process_index}] {model_name} {impl} {mode} failed:", flush=True)
                traceback.print_exc()
                new["errors"].append({**base, "mode": mode, "error": f"{type(err).__name__}: {err}"[:2000]})
            else:
                sharded, text = spec.tokens
                new["records"].append({**base, "mode": mode, **rec, "build_s": round(build_s, 1), "dtype": str(dtype),
                    "tokens": {"sharded": sharded, "text": text}, "warmup": args.warmup, "repeat": args.repeat,
                    "attention_modules": {k: list(kinds.values()).count(k) for k in ("self", "cross")},
                    "machine": new["machine"], "date": now(), "torch": torch.__version__})  # fmt: skip
                log(f"{model_name} {impl} world={world} {mode}: {rec['step_ms_median']:.2f} ms")
            write()
        del model, inputs
        gc.collect()
        torch._dynamo.reset()  # drop compiled code and guards that still reference this model
        if cuda:
            torch.cuda.empty_cache()
    log(short_table(new["records"]))
    for e in new["errors"]:
        log(f"ERROR {e['model']} {e['impl']} world={e['world']} {e['mode']}: {e['error']}")


if __name__ == "__main__":
    main()
