"""Which CUDA attention kernel a ring step should use: each kernel that returns the log-sum-exp against SDPA's own
choice, at the block shapes of a ring-2 step on 2 GPUs, in bf16.

    python benchmarks/lse_kernels.py --out benchmarks/results/h200-lse-kernels.json

Writes the JSON and prints a markdown table: median ms per call over 20 calls in a CUDA graph-free loop; each shape
without and with a key mask (the bias layout `ring.attention_lse` passes).
"""

import argparse
import json
import statistics
import sys

import torch
import torch.nn.functional as F
from run import time_steps  # benchmarks/, beside this script

from diffusers_usp.lse import attention_lse, kernel_bias

inf = float("inf")

# (name, batch, heads, queries, keys, head dim): one ring-2 block of FLUX.1-dev 1024² and of Wan2.1-14B 480p.
SHAPES = [
    ("flux-dev-1024 ring-2 block", 1, 24, 2304, 2304, 128),
    ("wan2.1-14b-480p ring-2 block", 1, 40, 16380, 16380, 128),
]


def kernels(q, k, v, bias=None):
    """BHSD views of BSHD tensors, as the ring passes them; `bias`, a [B, Sk] float32 key bias."""
    m = None if bias is None else kernel_bias(bias, q)  # the layout the ring passes
    ops = torch.ops.aten
    found = {
        "sdpa (its own choice, no lse)": lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=m),
        "attention_lse (the ring's choice)": lambda: attention_lse(
            *(x.transpose(1, 2) for x in (q, k, v)), bias, 1.0 / q.shape[-1] ** 0.5
        ),
        "cudnn (lse)": lambda: ops._scaled_dot_product_cudnn_attention(q, k, v, m, True)[:2],
        "efficient (lse)": lambda: ops._scaled_dot_product_efficient_attention(q, k, v, m, True)[:2],
    }
    if bias is None:  # flash attention takes no bias
        found["flash (lse)"] = lambda: ops._scaled_dot_product_flash_attention(q, k, v)[:2]
    return found


def time_ms(fn, n=20):
    """Median milliseconds of `n` calls after 3 untimed ones, timed as `run.py` times a step (CUDA events)."""
    for _ in range(3):
        fn()
    return statistics.median(time_steps(fn, n, torch.device("cuda"), world=1))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out")
    args = p.parse_args()
    rows = []
    for (name, B, H, Sq, Sk, D), masked in ((shape, masked) for shape in SHAPES for masked in (False, True)):
        q = torch.randn(B, Sq, H, D, device="cuda", dtype=torch.bfloat16).transpose(1, 2)
        k, v = (torch.randn(B, Sk, H, D, device="cuda", dtype=torch.bfloat16).transpose(1, 2) for _ in range(2))
        bias = None
        if masked:  # the block ends in key padding: a tenth of its keys masked, as a padded text prompt gives
            name = f"{name}, key mask"
            bias = torch.zeros(B, Sk, device="cuda").masked_fill(torch.arange(Sk, device="cuda") >= Sk * 9 // 10, -inf)
        full = None if bias is None else bias[:, None, None, :]
        ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=full)
        for kernel, fn in kernels(q, k, v, bias).items():
            try:
                out = fn()
                out = out[0] if isinstance(out, tuple) else out
                err = ((out.float() - ref).norm() / ref.norm()).item()
                rows.append({"shape": name, "kernel": kernel, "ms": round(time_ms(fn), 3), "rel_l2": err})
            except Exception as e:  # a kernel this build or GPU lacks
                rows.append({"shape": name, "kernel": kernel, "error": f"{type(e).__name__}: {e}"[:300]})
    print("| shape | kernel | ms | rel L2 vs fp32 |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['shape']} | {r['kernel']} | {r.get('ms', r.get('error'))} | {r.get('rel_l2', '')} |")
    if args.out:
        meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "dtype": "bfloat16"}
        with open(args.out, "w") as f:
            json.dump({**meta, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
