"""Chroma at 1024² with a padded prompt, full size with random weights: bf16 parity of `parallelize` against stock at
P = 1, and the forward's overhead.

Chroma's forward takes a padding vector over `[text, image]` and every block expands it to a dense `[B, 1, L, L]`
mask (its pipeline masks the prompt's padding past the first pad token). That is the masked path `parallelize`
takes for it at any P. The model is Chroma1-HD's architecture (the class defaults: 19 double and 38 single blocks,
24 heads x 128), built on the GPU with seeded random weights in bf16; the prompt has 512 T5 positions of which the
first `--prompt-tokens` + 1 are valid (as `ChromaPipeline._get_t5_prompt_embeds` builds the mask).

Stock and usp alternate on the same model (`parallelize`, then `remove_parallelism`), `--rounds` times each, so
both see the same clocks; each round times `--repeat` forwards after `--warmup`. Command (one GPU):

    torchrun --nproc_per_node 1 benchmarks/chroma.py

Writes `--out` (JSON) and the same name with `.md`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: use this checkout's diffusers_usp
    sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

import torch  # noqa: E402
from accelerate import PartialState  # noqa: E402
from diffusers import ChromaTransformer2DModel  # noqa: E402

import diffusers_usp  # noqa: E402


def inputs(model: ChromaTransformer2DModel, side: int, text: int, valid: int, device: torch.device) -> dict:
    """One forward's inputs at `side`² pixels (VAE /8, packed 2x2): Flux's ids and Chroma's padded joint mask."""
    g = torch.Generator().manual_seed(1)
    h = w = side // 16
    img_ids = torch.zeros(h, w, 3)
    img_ids[..., 1] = torch.arange(h)[:, None]
    img_ids[..., 2] = torch.arange(w)[None, :]
    mask = torch.ones(1, text + h * w, dtype=torch.bool)
    mask[:, valid + 1 : text] = False  # the prompt's padding, past the one pad token the pipeline keeps
    cfg = model.config
    return {
        "hidden_states": torch.randn(1, h * w, cfg.in_channels, generator=g).to(device, torch.bfloat16),
        "encoder_hidden_states": torch.randn(1, text, cfg.joint_attention_dim, generator=g).to(device, torch.bfloat16),
        "timestep": torch.full((1,), 0.5, device=device, dtype=torch.bfloat16),
        "img_ids": img_ids.reshape(-1, 3).to(device),
        "txt_ids": torch.zeros(text, 3, device=device),
        "attention_mask": mask.to(device),
    }


def timed(model, kwargs: dict, repeat: int, warmup: int) -> tuple[list[float], torch.Tensor]:
    with torch.no_grad():
        for _ in range(warmup):
            out = model(**kwargs, return_dict=False)[0]
        times = []
        for _ in range(repeat):
            torch.cuda.synchronize()
            start = time.perf_counter()
            out = model(**kwargs, return_dict=False)[0]
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return times, out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--prompt-tokens", type=int, default=77, help="valid prompt tokens of the 512")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/chroma.json"))
    args = parser.parse_args(argv)
    device = PartialState().device
    torch.manual_seed(0)
    with device:
        model = ChromaTransformer2DModel().to(torch.bfloat16).eval()
    kwargs = inputs(model, args.side, 512, args.prompt_tokens, device)
    times: dict[str, list[float]] = {"stock": [], "usp": []}
    outs = {}
    for _ in range(args.rounds):
        for mode in ("stock", "usp"):
            if mode == "usp":
                diffusers_usp.parallelize(model)
            t, outs[mode] = timed(model, kwargs, args.repeat, args.warmup)
            times[mode] += t
            if mode == "usp":
                diffusers_usp.remove_parallelism(model)
    diff = (outs["usp"].float() - outs["stock"].float()).abs()
    medians = {m: statistics.median(t) for m, t in times.items()}
    rec = dict(
        model="chroma1-hd",
        side=args.side,
        valid_prompt_tokens=args.prompt_tokens,
        device=torch.cuda.get_device_name(),
        torch=torch.__version__,
        world=torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1,
        median_s=medians,
        overhead=medians["usp"] / medians["stock"],
        max_abs_diff=diff.max().item(),
        bitwise_equal=bool(torch.equal(outs["usp"], outs["stock"])),
        output_abs_max=outs["stock"].float().abs().max().item(),
        times_s=times,
    )
    print(json.dumps({k: v for k, v in rec.items() if k != "times_s"}), flush=True)
    if PartialState().is_main_process:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rec, indent=1))
        args.out.with_suffix(".md").write_text(
            "| model | px | valid prompt tokens | device | world | stock | usp | usp / stock | max abs diff |\n"
            "|---|---|---|---|---|---|---|---|---|\n"
            f"| Chroma1-HD | {args.side}² | {args.prompt_tokens} of 512 | {rec['device']} | {rec['world']} | "
            f"{medians['stock'] * 1e3:.1f} ms | {medians['usp'] * 1e3:.1f} ms | {rec['overhead']:.3f} | "
            f"{rec['max_abs_diff']:.3g} |\n"
        )
    return rec


if __name__ == "__main__":
    main()
