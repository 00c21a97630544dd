"""Bandwidth of USP's packing copies around the all-to-alls, against a plain device-to-device copy.

    python benchmarks/packing.py --out benchmarks/results/h200.json    # then: python benchmarks/report.py ...

Each op is timed twice: as the library runs it (`diffusers_usp.comm.copy_`, which moves wide elements) and with
PyTorch's plain `Tensor.copy_` in its place, the copy it replaced. `run.py` also calls `measure_packing` on CUDA.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

if __package__ in (None, ""):  # run as a script: use this checkout's diffusers_usp (installed or not) and report.py
    sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import torch  # noqa: E402

from diffusers_usp import comm  # noqa: E402

Step = Callable[[], object]
SETS = 8  # input sets cycled through, so that no input (7 to 42 MB each) is still in the H200's 60 MB L2 when read


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _plain_copy(dst: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    return dst.copy_(src)


def measure_packing(device: torch.device, dtype: torch.dtype, copy_bytes: int) -> dict:
    """Bandwidth of USP's packing copies on Flux 1024²-sized local tensors, against one large device-to-device copy.

    Bytes moved count every byte read plus every byte written. Each timed call reads the next of `SETS` input sets
    and writes a buffer of its own (all outputs stay alive until the trial ends), so neither side is served from L2.
    On CUDA `us` is the time per call in a CUDA-graph replay (kernels only), `us_eager` that of plain calls, whose
    host overhead (Python, launches) it includes.
    """
    S, H, D = 4096 + 512, 24, 128  # Flux 1024²: image + text tokens, heads, head dim
    size = torch.finfo(dtype).bits // 8
    calls = 4 * SETS if device.type == "cuda" else SETS  # tens of µs per call on a GPU (amortise launches)

    def per_call_us(run: Step, calls: int) -> float:  # median of 5 trials of `calls` back-to-back calls
        trials = []
        for _ in range(5):
            _sync(device)
            t0 = time.perf_counter()
            run()
            _sync(device)
            trials.append((time.perf_counter() - t0) * 1e6 / calls)
        return statistics.median(trials)

    def bandwidth(fn: Callable[[int], object], nbytes: int, calls: int = calls) -> dict:
        run = lambda: [fn(i % SETS) for i in range(calls)]  # noqa: E731 (the outputs live until the list is dropped)
        run()
        res = {"bytes": nbytes, "us_eager": round(per_call_us(run, calls), 2)}
        res["us"] = res["us_eager"]
        if device.type == "cuda":
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                outputs = run()  # kept: each call writes its own buffer in the graph's pool
            res["us"] = round(per_call_us(graph.replay, calls), 2)
            del outputs, graph
        return {**res, "gb_per_s": round(nbytes / res["us"] / 1e3, 1)}

    src, dst = (torch.empty(copy_bytes // size, dtype=dtype, device=device) for _ in range(2))
    copy = bandwidth(lambda i: dst.copy_(src), 2 * copy_bytes, calls=5)
    src = dst = None  # free 2 x copy_bytes before the packing tensors
    rows = []
    for P in (2, 4, 8):
        split, layout = comm.head_split(H, H, P), (S // P,) * P
        new = lambda *shape: [torch.randn(*shape, device=device, dtype=dtype) for _ in range(SETS)]  # noqa: E731
        q, k, v = new(1, S // P, H, D), new(1, S // P, H, D), new(1, S // P, H, D)  # my tokens, all heads
        out = new(1, S, H // P, D)  # my heads, all tokens (the attention output)
        recv = new(P, 1, S // P, H // P, D)  # the output all-to-all's result: my tokens, every source's heads
        ops = {
            "pack_qkv": (lambda i: comm.pack_qkv(q[i], k[i], v[i], split), 2 * 3 * q[0].numel() * size),
            "pack_out": (lambda i: comm.pack_out(out[i], split, layout), 2 * out[0].numel() * size),
            "unpack_heads": (lambda i: comm.unpack_heads(recv[i], split), 2 * recv[0].numel() * size),
        }
        row = {"world": P, "local_tokens": S // P}
        for name, (fn, nbytes) in ops.items():
            row[name] = bandwidth(fn, nbytes)
            with mock.patch.object(comm, "copy_", _plain_copy):  # the same op with the copy it replaced
                row[name]["plain"] = bandwidth(fn, nbytes)
            for res in (row[name], row[name]["plain"]):
                res["fraction_of_copy"] = round(res["gb_per_s"] / copy["gb_per_s"], 3)
        rows.append(row)
        del ops  # the lambdas hold the last inputs: free them before the next P allocates
    return {"shape": f"[1, {S}/P, {H}, {D}] {dtype}".replace("torch.", ""), "sets": SETS, "copy": copy, "rows": rows}


def main(argv: list[str] | None = None) -> None:
    from report import merge_file

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="results JSON whose `packing` entry is replaced")
    args = p.parse_args(argv)
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    packing = measure_packing(device, dtype, copy_bytes=2 << 30 if device.type == "cuda" else 256 << 20)
    merge_file(args.out, {"packing": packing})
    for row in packing["rows"]:
        for name in ("pack_qkv", "pack_out", "unpack_heads"):
            r = row[name]
            print(
                f"P={row['world']} {name:<12} {r['us']:>8} us {r['fraction_of_copy']:>6.1%} of copy"
                f"   plain copy: {r['plain']['us']:>8} us {r['plain']['fraction_of_copy']:>6.1%}"
                f"   eager {r['us_eager']} us (plain {r['plain']['us_eager']} us)"
            )


if __name__ == "__main__":
    main()
