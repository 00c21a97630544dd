"""Parity on GPUs: usp at world N against the stock computation, in bf16, on full-size random weights.

    torchrun --nproc_per_node 2 benchmarks/parity.py [--impl usp-ring2]

Prints three relative L2 errors for FLUX.1-dev 1024²: usp eager against stock (the same model after
`remove_parallelism`, so the same weights run whole on every rank), a graph replay (`apply_cuda_graphs`, with its
head-chunked exchange) against usp eager, and stock with SDPA's memory-efficient kernel against stock: the bf16
noise floor that the first should match.
"""

import argparse
import sys
from pathlib import Path

root = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(root), str(root / "benchmarks")]  # this checkout's diffusers_usp and run.py
import torch  # noqa: E402
from accelerate import PartialState  # noqa: E402
from run import IMPLS, MODELS, build  # noqa: E402

import diffusers_usp  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--impl", choices=[i for i in IMPLS if i.startswith("usp")], default="usp")
impl = parser.parse_args().impl
state = PartialState()
dev, world = state.device, state.num_processes
spec = MODELS["flux-dev-1024"]
usp, inputs = build(spec, impl, world, dev, torch.bfloat16, seed=0)
with torch.no_grad():
    out = usp(**inputs, return_dict=False)[0]
    diffusers_usp.apply_cuda_graphs(usp)
    for _ in range(2):
        g = usp(**inputs, return_dict=False)[0]
    diffusers_usp.remove_cuda_graphs(usp)
    diffusers_usp.remove_parallelism(usp)
    undone = usp(**inputs, return_dict=False)[0]  # whole model on every rank: the stock computation
    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.EFFICIENT_ATTENTION):
        other_kernel = usp(**inputs, return_dict=False)[0]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


if state.is_main_process:
    print(f"flux-dev-1024 world {world}: rel L2 {impl} eager vs stock {rel(out, undone):.2e}", flush=True)
    print(f"graph replay vs {impl} eager {rel(g, out):.2e}", flush=True)
    print(f"stock with another SDPA kernel vs stock {rel(other_kernel, undone):.2e}", flush=True)
