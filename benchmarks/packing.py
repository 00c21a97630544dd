"""Bandwidth of USP's packing copies around the all-to-alls, against a plain device-to-device copy."""

from __future__ import annotations

import functools
import statistics
import time
from typing import Callable

import torch

from diffusers_usp.comm import head_split, pack_out, pack_qkv

Step = Callable[[], object]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_packing(device: torch.device, dtype: torch.dtype, copy_bytes: int) -> dict:
    """Bandwidth of USP's packing copies on Flux 1024²-sized local tensors, against one large device-to-device copy.
    Bytes moved count every byte read plus every byte written; on CUDA the time is that of a graph replay (kernels
    only), and `us_eager` the plain calls'."""
    S, H, D = 4096 + 512, 24, 128  # Flux 1024²: image + text tokens, heads, head dim
    size = torch.finfo(dtype).bits // 8
    calls = 50 if device.type == "cuda" else 3  # tens of µs per pack on a GPU (amortise launches); ms on a CPU

    def per_call_us(run: Step, calls: int) -> float:  # median of 5 trials of `calls` back-to-back calls
        trials = []
        for _ in range(5):
            _sync(device)
            t0 = time.perf_counter()
            run()
            _sync(device)
            trials.append((time.perf_counter() - t0) * 1e6 / calls)
        return statistics.median(trials)

    def bandwidth(fn: Step, nbytes: int, calls: int = calls) -> dict:
        fn()
        eager = per_call_us(lambda: [fn() for _ in range(calls)], calls)
        res = {"bytes": nbytes, "us_eager": round(eager, 2), "us": round(eager, 2)}
        if device.type == "cuda":
            # The copies alone, without the host's launch gaps: `calls` calls captured in one CUDA graph.
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):  # other ranks' NCCL threads run
                for _ in range(calls):
                    fn()
            res["us"] = round(per_call_us(graph.replay, calls), 2)
        return {**res, "gb_per_s": round(nbytes / res["us"] / 1e3, 1)}

    src, dst = (torch.empty(copy_bytes // size, dtype=dtype, device=device) for _ in range(2))
    copy = bandwidth(lambda: dst.copy_(src), 2 * copy_bytes, calls=5)
    src = dst = None  # free 2 x copy_bytes before the packing tensors
    rows = []
    for P in (2, 4, 8):
        split, layout = head_split(H, H, P), (S // P,) * P
        q, k, v = (torch.randn(1, S // P, H, D, device=device, dtype=dtype) for _ in range(3))
        out = torch.randn(1, S, H // P, D, device=device, dtype=dtype)  # this rank's heads, all tokens
        pack_in = functools.partial(pack_qkv, q, k, v, split)
        pack_back = functools.partial(pack_out, out, split, layout)
        row = {"world": P, "local_tokens": S // P, "pack_qkv": bandwidth(pack_in, 2 * 3 * q.numel() * size),
               "pack_out": bandwidth(pack_back, 2 * out.numel() * size)}  # fmt: skip
        for name in ("pack_qkv", "pack_out"):
            row[name]["fraction_of_copy"] = round(row[name]["gb_per_s"] / copy["gb_per_s"], 3)
        rows.append(row)
    return {"shape": f"[1, {S}/P, {H}, {D}] {dtype}".replace("torch.", ""), "copy": copy, "rows": rows}
