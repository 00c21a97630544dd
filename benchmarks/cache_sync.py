"""What keeping a step cache in step across ranks, and checking every forward's inputs, cost per step.

- First Block Cache's decision: diffusers' local one (two means over this rank's tokens, one host sync) against the
  synced one (`caches.py`: two float64 sums, one all-reduce of 2 numbers over the sequence group, one host sync), on
  a FLUX.1-dev 1024² first-block residual `[1, 4096 / P, 3072]`.
- The input check (`inputs.py`): the float64 checksum of every input of a FLUX.1-dev 1024² forward (latents, T5 and
  CLIP embeddings, timestep, guidance, ids).

    torchrun --nproc_per_node 1 benchmarks/cache_sync.py --out benchmarks/results/cache-sync.json   # one GPU, NCCL
    torchrun --nproc_per_node 2 benchmarks/cache_sync.py --out benchmarks/results/cache-sync.json

At world 1 the all-reduce is NCCL's launch and a no-op transfer: the figure bounds its host and launch cost, not the
latency between GPUs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: use this checkout's diffusers_usp
    sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from diffusers_usp.inputs import checksums  # noqa: E402


def _time_ms(fn, repeat: int = 200) -> float:
    """Median wall time of `fn()` (which ends in a host sync), in milliseconds."""
    for _ in range(10):
        fn()
    times = []
    for _ in range(repeat):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    dist.init_process_group("nccl")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", rank % torch.cuda.device_count())
    torch.cuda.set_device(device)
    g = torch.Generator(device).manual_seed(0)
    tokens = 4096 // world
    residual = torch.randn(1, tokens, 3072, device=device, dtype=torch.bfloat16, generator=g)
    previous = torch.randn(1, tokens, 3072, device=device, dtype=torch.bfloat16, generator=g)

    def local() -> bool:  # diffusers' FBCHeadBlockHook._should_compute_remaining_blocks
        diff = (residual - previous).abs().mean()
        return (diff / previous.abs().mean()).item() > 0.1

    def synced() -> bool:  # caches._fbc_should_compute
        sums = torch.stack(
            [(residual - previous).abs().sum(dtype=torch.float64), previous.abs().sum(dtype=torch.float64)]
        )
        dist.all_reduce(sums)
        numerator, denominator = sums.tolist()
        return numerator / denominator > 0.1

    inputs = [
        torch.randn(1, 4096, 64, device=device, dtype=torch.bfloat16),  # latents
        torch.randn(1, 512, 4096, device=device, dtype=torch.bfloat16),  # T5 embeddings
        torch.randn(1, 768, device=device, dtype=torch.bfloat16),  # CLIP pooled
        torch.rand(1, device=device),  # timestep
        torch.full((1,), 3.5, device=device),  # guidance
        torch.zeros(4096, 3, device=device),  # img_ids
        torch.zeros(512, 3, device=device),  # txt_ids
    ]
    record = {
        "world": world,
        "device": torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "nccl": ".".join(map(str, torch.cuda.nccl.version())),
        "fbc_decision_local_ms": _time_ms(local),
        "fbc_decision_synced_ms": _time_ms(synced),
        "input_checksums_ms": _time_ms(lambda: checksums(inputs).tolist()),
    }
    if rank == 0:
        print(json.dumps(record, indent=1))
        if args.out:
            old = json.loads(args.out.read_text()) if args.out.exists() else []
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps([*old, record], indent=1))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
