"""Flux.2 text-to-image with Ulysses sequence parallelism, and its 32B transformer's weights sharded across the
processes (`--shard-weights`): each process holds 1/N of the image tokens and, sharded, 1/N of the weights.

    accelerate launch --multi_gpu --num_processes 2 examples/flux2.py --shard-weights   # tiny, CPU, offline
    accelerate launch --num_processes 4 examples/flux2.py --model black-forest-labs/FLUX.2-dev --shard-weights

FLUX.2-dev is a 32B transformer (64 GB in bf16) and a 24B Mistral text encoder (48 GB): with --shard-weights both are
loaded on the CPU and each process moves only its shards to its GPU (16 + 12 GB per GPU on 4 GPUs; docs/launching.md,
"When to shard the weights"). Without --model the weights are random and the output is noise.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from diffusers import Flux2Pipeline

import diffusers_usp
from diffusers_usp import tiny

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--model", help="hub id or local path (default: a tiny random-weight pipeline, no download)")
parser.add_argument("--prompt", default="A cat holding a sign that says hello world")
parser.add_argument("--steps", type=int, help="denoising steps (default: 50, or 4 for the tiny pipeline)")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--shard-weights", action="store_true", help="shard the transformer's and text encoder's weights")
parser.add_argument("--eager", action="store_true", help="on CUDA, skip torch.compile of the transformer blocks")
parser.add_argument("--out", default="out/flux2.png", help="the PNG; the float pixels go beside it as .npy")


def main(argv: list[str] | None = None) -> None:
    """Generate and save; `argv` as on the command line (`None`: `sys.argv`)."""
    args = parser.parse_args(argv)
    # cpu=True without CUDA: only then does accelerate count CPU processes launched with --multi_gpu as one group
    state = PartialState(cpu=not torch.cuda.is_available())
    dtype = torch.bfloat16 if state.device.type == "cuda" else torch.float32
    if args.model:
        pipe = Flux2Pipeline.from_pretrained(args.model, dtype=dtype)  # on the CPU: it may not fit one GPU whole
        call = dict(prompt=args.prompt, height=1024, width=1024, guidance_scale=4.0)
    else:  # random weights; prompt embeddings stand in for its missing text encoder
        pipe = tiny.tiny_flux2_pipeline(dtype=dtype)
        call = tiny.tiny_call_kwargs("flux2", state.device, dtype)
    steps = args.steps or (50 if args.model else 4)

    if state.device.type == "cuda" and not args.eager:
        pipe.transformer.compile_repeated_blocks(fullgraph=True)  # before sharding: it finds the blocks by class name
    if args.shard_weights:  # each process moves its shards of the transformer and text encoder to its device
        diffusers_usp.parallelize(pipe, shard_weights=True)
        pipe.vae.to(state.device)  # whole on every process, as are the VAEs of every other example
    else:
        pipe.to(state.device)
        diffusers_usp.parallelize(pipe)
    pipe.set_progress_bar_config(disable=not state.is_main_process)

    def generate(steps: int) -> tuple[np.ndarray, float]:
        state.wait_for_everyone()  # start the clock together: the ranks finish loading at different times
        start = time.perf_counter()
        generator = torch.Generator().manual_seed(args.seed)  # on CPU: the same latents on every rank
        image = pipe(**call, num_inference_steps=steps, generator=generator, output_type="np").images[0]
        return image, time.perf_counter() - start  # output_type="np" copied it to the host: the GPU is done

    _, warmup = generate(2)  # each block input shape is compiled on its first call
    image, seconds = generate(steps)
    memory = f", peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if state.device.type == "cuda" else ""
    state.print(f"{state.num_processes} processes: warm-up {warmup:.1f}s, {steps} steps {seconds:.1f}s{memory}")
    if state.is_main_process:  # every rank holds the same image
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pipe.image_processor.numpy_to_pil(image)[0].save(args.out)
        np.save(Path(args.out).with_suffix(".npy"), image)  # the float pixels, which tests/test_pipeline.py compares
        print(f"saved {args.out}")


if __name__ == "__main__":
    main()
    PartialState().destroy_process_group()  # the process group main() started, if any
