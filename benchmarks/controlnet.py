"""One Flux ControlNet step: what the ControlNet costs, whole on every rank or parallelized with the transformer.

    python benchmarks/controlnet.py --out benchmarks/results/h200-controlnet.json                      # 1 GPU
    accelerate launch --num_processes 4 benchmarks/controlnet.py --out benchmarks/results/h200-x4-controlnet.json

FLUX.1-dev (random bf16 weights) at 1024², with a ControlNet the size of InstantX's Union (5 double + 10 single
blocks, 10 control modes): the ControlNet's forward, then the transformer's with its residuals, in eager mode.
`stock`: nothing parallelized (world 1 only). `whole`: the transformer parallelized, the ControlNet run whole on
every rank (what a ControlNet without a plan does). `usp`: both, as `parallelize(pipe)` does for Flux. Writes the
JSON and a markdown table beside it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: use this checkout's diffusers_usp (installed or not) and run.py
    sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import torch  # noqa: E402
from accelerate import PartialState  # noqa: E402
from diffusers import FluxControlNetModel, FluxTransformer2DModel  # noqa: E402
from run import _over_ranks, time_steps  # noqa: E402

import diffusers_usp  # noqa: E402
from diffusers_usp import tiny  # noqa: E402

CONTROLNET = dict(num_layers=5, num_single_layers=10, num_mode=10, guidance_embeds=True)  # InstantX Union's layout
SHAPE = dict(height=64, width=64, text_len=512)  # 1024² px -> 4096 packed image tokens; 512 T5 tokens


def _build(cls, config: dict, device: torch.device, dtype: torch.dtype, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    with device:  # initialise on the GPU: billions of parameters take minutes on a CPU
        model = cls(**config)
    for param in model.parameters():  # neither class keeps modules in float32
        param.data = param.data.to(dtype)
    return model.eval()


def measure(impl: str, world: int, device: torch.device, dtype: torch.dtype, warmup: int, repeat: int) -> dict:
    transformer = _build(FluxTransformer2DModel, dict(guidance_embeds=True), device, dtype, seed=0)
    controlnet = _build(FluxControlNetModel, CONTROLNET, device, dtype, seed=1)
    inputs = tiny.flux_transformer_inputs(transformer, seed=2, **SHAPE)  # drawn on the CPU: the same on every rank
    cond = torch.randn(1, SHAPE["height"] * SHAPE["width"], 64, generator=torch.Generator().manual_seed(3))
    control = dict(controlnet_cond=cond.to(device, dtype), controlnet_mode=torch.zeros(1, 1, dtype=torch.long,
                   device=device), conditioning_scale=0.7)  # fmt: skip
    if impl in ("whole", "usp"):
        diffusers_usp.parallelize(transformer)
    if impl == "usp":
        diffusers_usp.parallelize(controlnet)

    def run_controlnet():
        return controlnet(**inputs, **control, return_dict=False)

    def step():
        blocks, single = run_controlnet()
        return transformer(**inputs, controlnet_block_samples=blocks, controlnet_single_block_samples=single,
                           return_dict=False)  # fmt: skip

    record = {"impl": impl, "world": world}
    with torch.no_grad():
        for name, fn in (("controlnet_ms", run_controlnet), ("step_ms", step)):
            time_steps(fn, warmup, device, world)
            record[name] = round(
                statistics.median(_over_ranks(time_steps(fn, repeat, device, world), device, world)), 2
            )
    record["controlnet_share"] = round(record["controlnet_ms"] / record["step_ms"], 3)
    return record


def table(data: dict) -> str:
    stock = next((r["step_ms"] for r in data["records"] if r["impl"] == "stock"), None)
    lines = [f"# Flux ControlNet step ({data['machine']}, {data['torch']})", "",
             "FLUX.1-dev at 1024² with an InstantX-Union-sized ControlNet (5 + 10 blocks), random bf16 weights, eager; "
             "median ms, slowest rank. Speed-up against `stock` at world 1.", "",
             "| impl | world | ControlNet ms | step ms | ControlNet share | speed-up |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in data["records"]:
        speed = f"{stock / r['step_ms']:.2f}x" if stock else "-"
        lines.append(f"| {r['impl']} | {r['world']} | {r['controlnet_ms']} | {r['step_ms']} | "
                     f"{r['controlnet_share']:.0%} | {speed} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="results JSON (records of the same impl and world replaced)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeat", type=int, default=10)
    args = p.parse_args(argv)
    state = PartialState()
    if state.device.type != "cuda":
        p.error("needs CUDA: full-size Flux on a CPU takes minutes per step")
    world = state.num_processes
    impls = ("stock", "usp") if world == 1 else ("whole", "usp")  # at world 1 `whole` is `usp`
    records = [measure(impl, world, state.device, torch.bfloat16, args.warmup, args.repeat) for impl in impls]
    if state.is_main_process:
        old = json.loads(args.out.read_text()) if args.out.exists() else {"records": []}
        keep = [r for r in old["records"] if (r["impl"], r["world"]) not in {(n["impl"], n["world"]) for n in records}]
        data = {"machine": f"{torch.cuda.get_device_name(state.device)}", "torch": torch.__version__,
                "records": sorted(keep + records, key=lambda r: (r["world"], r["impl"]))}  # fmt: skip
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(data, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(table(data))
        print(table(data))
    state.destroy_process_group()


if __name__ == "__main__":
    main()
