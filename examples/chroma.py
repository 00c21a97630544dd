"""Chroma text-to-image with Ulysses sequence parallelism: each process holds 1/N of the image tokens.

    accelerate launch --multi_gpu --num_processes 2 examples/chroma.py   # tiny random-weight pipeline, CPU, offline
    accelerate launch --num_processes 4 examples/chroma.py --model lodestones/Chroma1-HD   # 4 GPUs
    accelerate launch --num_processes 4 examples/chroma.py --model lodestones/Chroma1-HD --eager   # no compile

Chroma pads its T5 prompt and passes a padding vector over [text, image] that every block expands to a per-query
mask; each rank applies it after the input all-to-all, when it holds every query and key of its heads. CFG is two
forwards per step, the negative prompt with its own length and mask. Without --model the weights are random and the
output is noise: it shows the launch and the timing.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from diffusers import ChromaPipeline

import diffusers_usp
from diffusers_usp import tiny

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--model", help="hub id or local path (default: a tiny random-weight pipeline, no download)")
parser.add_argument("--prompt", default="A high-fashion close-up portrait of a blonde woman in clear sunglasses")
parser.add_argument("--negative-prompt", default="low quality, ugly, unfinished, out of focus, deformed, disfigure")
parser.add_argument("--steps", type=int, help="denoising steps (default: 40, or 4 for the tiny pipeline)")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--eager", action="store_true", help="on CUDA, skip torch.compile and CUDA graphs")
parser.add_argument("--out", default="out/chroma.png", help="the PNG; the float pixels go beside it as .npy")


def main(argv: list[str] | None = None) -> None:
    """Generate and save; `argv` as on the command line (`None`: `sys.argv`)."""
    args = parser.parse_args(argv)

    # cpu=True without CUDA: only then does accelerate count CPU processes launched with --multi_gpu as one group
    state = PartialState(cpu=not torch.cuda.is_available())
    dtype = torch.bfloat16 if state.device.type == "cuda" else torch.float32
    if args.model:
        pipe = ChromaPipeline.from_pretrained(args.model, dtype=dtype).to(state.device)
        call = dict(
            prompt=args.prompt, negative_prompt=args.negative_prompt, height=1024, width=1024, guidance_scale=3.0
        )
    else:  # random weights; padded prompt embeddings and their masks stand in for the missing T5 encoder
        pipe = tiny.tiny_chroma_pipeline(dtype=dtype).to(state.device)
        call = tiny.tiny_call_kwargs("chroma", state.device, dtype)
    steps = args.steps or (40 if args.model else 4)

    diffusers_usp.parallelize(pipe)
    if state.device.type == "cuda" and not args.eager:
        pipe.transformer.compile_repeated_blocks(fullgraph=True)
        diffusers_usp.apply_cuda_graphs(pipe)  # after parallelize, so the graphs hold the collectives too
    pipe.set_progress_bar_config(disable=not state.is_main_process)

    def generate(steps: int) -> tuple[np.ndarray, float]:
        state.wait_for_everyone()  # start the clock together: the ranks finish loading at different times
        start = time.perf_counter()
        generator = torch.Generator().manual_seed(args.seed)  # on CPU: the same latents on every rank
        image = pipe(**call, num_inference_steps=steps, generator=generator, output_type="np").images[0]
        return image, time.perf_counter() - start  # output_type="np" copied it to the host: the GPU is done

    _, warmup = generate(2)  # each transformer input shape is compiled and captured on its first call
    image, seconds = generate(steps)
    state.print(
        f"{state.num_processes} processes: warm-up (compile, capture) {warmup:.1f}s, {steps} steps {seconds:.1f}s"
    )
    if state.is_main_process:  # every rank holds the same image
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pipe.image_processor.numpy_to_pil(image)[0].save(args.out)
        np.save(Path(args.out).with_suffix(".npy"), image)  # the float pixels, which tests/test_pipeline.py compares
        print(f"saved {args.out}")


if __name__ == "__main__":
    main()
    PartialState().destroy_process_group()  # the process group main() started, if any
