"""Time one classifier-free-guidance step: two transformer passes, cond then uncond, each in its `cache_context`, as
WanPipeline makes them, then the guidance combination.

    python benchmarks/cfg_step.py --impl stock --out benchmarks/results/h200-x2-cfg.json
    torchrun --nproc_per_node 2 benchmarks/cfg_step.py --impl usp --out benchmarks/results/h200-x2-cfg.json
    torchrun --nproc_per_node 2 benchmarks/cfg_step.py --impl usp-cfg2 --out benchmarks/results/h200-x2-cfg.json

`usp` runs both passes with Ulysses over every rank; `usp-cfg2` is `parallelize(model, cfg_degree=2)`: the cond pass
on one half of the ranks, the uncond pass on the other, one all-gather per step. Eager, random bf16 weights (float32
on CPU, where `--model tiny-wan` is a smoke run). Records merge into `--out` by (model, impl, world).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import torch  # noqa: E402
from accelerate import PartialState  # noqa: E402
from run import MODELS, _over_ranks, build, time_steps  # noqa: E402

import diffusers_usp  # noqa: E402
from diffusers_usp import tiny  # noqa: E402

GUIDANCE = 5.0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=[m for m in MODELS if "wan" in m], default="wan2.1-14b-480p")
    p.add_argument("--impl", choices=("stock", "usp", "usp-cfg2"), default="usp-cfg2")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps (the first pairs nothing: shapes are learnt)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    state = PartialState(cpu=not torch.cuda.is_available())
    device, world = state.device, state.num_processes
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    spec = MODELS[args.model]
    model, cond = build(spec, "stock", world, device, dtype, seed=0)
    uncond = {**cond, **tiny.wan_transformer_inputs(model, seed=7, **spec.shape)}  # other text, same latents
    uncond["hidden_states"], uncond["timestep"] = cond["hidden_states"], cond["timestep"]
    if args.impl != "stock":
        diffusers_usp.parallelize(model, cfg_degree=2 if args.impl == "usp-cfg2" else 1)

    def step():
        with model.cache_context("cond"):
            noise_cond = model(**cond, return_dict=False)[0]
        with model.cache_context("uncond"):
            noise_uncond = model(**uncond, return_dict=False)[0]
        return noise_uncond + GUIDANCE * (noise_cond - noise_uncond)

    with torch.no_grad():
        time_steps(step, args.warmup, device, world)
        times = _over_ranks(time_steps(step, args.repeat, device, world), device, world)
    rec = {"model": args.model, "impl": args.impl, "world": world, "mode": "eager", "passes_per_step": 2,
           "step_ms_median": round(statistics.median(times), 2), "step_ms_all": [round(t, 2) for t in times],
           "machine": f"{world}x {torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}",
           "torch": torch.__version__}  # fmt: skip
    if state.is_main_process:
        print(json.dumps(rec), flush=True)
        if args.out:
            old = json.loads(args.out.read_text()) if args.out.exists() else {"records": []}
            key = (rec["model"], rec["impl"], rec["world"])
            old["records"] = [r for r in old["records"] if (r["model"], r["impl"], r["world"]) != key] + [rec]
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(old, indent=1) + "\n")


if __name__ == "__main__":
    main()
