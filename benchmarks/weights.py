"""Weight sharding (`parallelize(..., shard_weights=True)`): one transformer forward's time and peak memory with it on
and off, at full size with random weights, and the per-model memory table of docs/launching.md.

    accelerate launch --num_processes 2 benchmarks/weights.py --model flux-dev --out benchmarks/results/weights.json
    accelerate launch --num_processes 2 benchmarks/weights.py --model flux2-dev --shard-only   # 64 GB: shards only
    accelerate launch --multi_gpu --num_processes 2 benchmarks/weights.py --model flux2-dev --tiny   # CPU, same path
    python benchmarks/weights.py --table   # the memory table, from parameter counts on the meta device

The model is built on the meta device and cast there, sharded (or not) there, and only then materialized on the
device (`to_empty`) with random values: no rank ever holds a whole 32B model, and no time goes into a CPU init. Step
time does not depend on the weight values. Records merge into `--out` (JSON) as they are measured.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: this checkout's diffusers_usp, and run.py beside it
    sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import torch  # noqa: E402
from accelerate import PartialState  # noqa: E402
from diffusers import Flux2Transformer2DModel, FluxTransformer2DModel  # noqa: E402
from run import time_steps  # noqa: E402
from torch.distributed.tensor import DTensor  # noqa: E402
from weights_table import markdown_table  # noqa: E402

import diffusers_usp  # noqa: E402
from diffusers_usp import tiny  # noqa: E402
from diffusers_usp.tiny._common import cast  # noqa: E402
from diffusers_usp.weights import is_sharded  # noqa: E402

# name: (class, config, input helper, its shape): 1024² px -> 64 x 64 packed tokens, and 512 text tokens. The tiny
# models take the same path (meta, shard, materialize) on the CPU.
FULL = dict(height=64, width=64, text_len=512)
TINY = dict(height=8, width=8, text_len=8)
MODELS = {
    "flux-dev": (FluxTransformer2DModel, dict(guidance_embeds=True), tiny.flux_transformer_inputs, FULL),
    "flux2-dev": (Flux2Transformer2DModel, {}, tiny.flux2_transformer_inputs, FULL),
    "tiny-flux": (FluxTransformer2DModel, tiny.tiny_flux_transformer().config, tiny.flux_transformer_inputs, TINY),
    "tiny-flux2": (Flux2Transformer2DModel, tiny.tiny_flux2_transformer().config, tiny.flux2_transformer_inputs, TINY),
}


def build(name: str, shard: bool, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """The model on `device` with random weights, parallelized, its weights sharded when `shard`."""
    cls, config, _, _ = MODELS[name]
    with torch.device("meta"):
        model = cast(cls.from_config(config), dtype)  # as from_pretrained(dtype=...): fp32 modules stay float32
    diffusers_usp.parallelize(model, shard_weights=shard)  # FSDP2 shards meta parameters, allocating nothing
    model.to_empty(device=device)
    generator = torch.Generator(device).manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():  # each rank fills its own shard (or its whole copy)
            local = param.to_local() if isinstance(param, DTensor) else param
            local.normal_(0.0, 0.02, generator=generator)
    return model


def stored_bytes(model: torch.nn.Module) -> int:
    """Bytes of parameters this rank stores (its shards, or whole parameters)."""
    params = (p.to_local() if isinstance(p, DTensor) else p for p in model.parameters())
    return sum(p.numel() * p.element_size() for p in params)


def measure(name: str, shard: bool, steps: int, state: PartialState) -> dict:
    device, world = state.device, state.num_processes
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    model = build(name, shard, device, dtype)
    _, _, make_inputs, shape = MODELS[name]
    inputs = make_inputs(model, seed=1, **shape)

    def step():
        with torch.inference_mode():
            return model(**inputs, return_dict=False)[0]

    step()  # lazy initialisation (FSDP2's, the input check)
    times = time_steps(step, steps, device, world)
    record = {
        "model": name,
        "world": world,
        "shard_weights": shard and is_sharded(model),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "median_ms": statistics.median(times),
        "times_ms": times,
        "stored_gib": stored_bytes(model) / 2**30,
    }
    if device.type == "cuda":
        record["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), default="flux-dev")
    parser.add_argument("--tiny", action="store_true", help="the tiny model of --model's family (CPU, seconds)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument(
        "--shard-only", action="store_true", help="skip the unsharded run (a model too big for one GPU)"
    )
    parser.add_argument("--table", action="store_true", help="print docs/launching.md's memory table and exit")
    parser.add_argument("--out", help="merge the records into this JSON file (rank 0)")
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table())
        return
    if args.tiny:
        args.model = "tiny-" + args.model.removesuffix("-dev").removeprefix("tiny-")
    state = PartialState(cpu=not torch.cuda.is_available())
    records = [
        measure(args.model, shard, args.steps, state) for shard in ((True,) if args.shard_only else (False, True))
    ]
    if state.is_main_process:
        for r in records:
            peak = f", peak {r['peak_gib']:.1f} GiB" if "peak_gib" in r else ""
            print(f"{r['model']} world {r['world']} shard_weights={r['shard_weights']}: {r['median_ms']:.1f} ms, "
                  f"stores {r['stored_gib']:.3f} GiB{peak}")  # fmt: skip
        if args.out:
            path = Path(args.out)
            old = json.loads(path.read_text()) if path.exists() else []
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(old + records, indent=1))


if __name__ == "__main__":
    main()
    PartialState().destroy_process_group()  # the process group main() started, if any
