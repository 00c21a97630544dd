"""Peak activation memory of one VAE decode per rank, on CPU, with and without the VAE split.

Counts every CPU allocation and free during the decode from torch's profiler (`profile_memory=True`: each op's own net
allocation, and one `[memory]` event per free or allocation outside an op, in order), so the peak is that of live
tensors, weights excluded (they exist before). An op's transient buffers freed inside it are not seen.
Run at 1 process and under `accelerate launch --multi_gpu --num_processes P`; rank 0 prints one JSON line:

    python benchmarks/vae_memory.py && accelerate launch --multi_gpu --num_processes 2 benchmarks/vae_memory.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

import torch  # noqa: E402
from accelerate import PartialState  # noqa: E402
from diffusers import AutoencoderKLWan  # noqa: E402

import diffusers_usp  # noqa: E402


def peak_bytes(fn) -> int:
    """Largest sum of live bytes allocated by `fn` (the profiler's allocation and free events, in order)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    live = peak = 0
    for e in events:
        live += e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-dim", type=int, default=32, help="Wan2.1's VAE has 96; 32 keeps a CPU run short")
    parser.add_argument("--latent", type=int, nargs=3, default=(3, 32, 32), help="latent frames, height, width")
    args = parser.parse_args()
    state = PartialState(cpu=True)
    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=args.base_dim).eval()
    latent = torch.randn(1, 16, *args.latent)
    if state.num_processes > 1:
        diffusers_usp.parallelize(vae)
    with torch.no_grad():
        vae.decode(latent)  # warm-up: lazy initialisations stay out of the count
        peak = peak_bytes(lambda: vae.decode(latent))
    if state.is_main_process:
        print(json.dumps(dict(world=state.num_processes, base_dim=args.base_dim, latent=args.latent,
                              peak_mib=round(peak / 2**20, 1))))  # fmt: skip


if __name__ == "__main__":
    main()
