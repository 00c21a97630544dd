"""HunyuanVideo 1.5 text-to-video with Ulysses sequence parallelism: each process holds 1/N of the video tokens.

    accelerate launch --multi_gpu --num_processes 2 examples/hunyuan_video15.py   # tiny random-weight pipeline, CPU
    accelerate launch --num_processes 8 examples/hunyuan_video15.py \\
        --model hunyuanvideo-community/HunyuanVideo-1.5-480p_t2v   # the 480p text-to-video checkpoint

Every joint attention masks the padded prompt tokens as queries and as keys (a per-query mask the model builds from
each rank's own tokens); the core carries each token's validity through the exchange instead of the mask. Without
--model the weights are random and the output is noise: it shows the launch and the timing.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from diffusers import HunyuanVideo15Pipeline
from diffusers.utils import export_to_gif

import diffusers_usp
from diffusers_usp import tiny

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--model", help="hub id or local path (default: a tiny random-weight pipeline, no download)")
parser.add_argument("--prompt", default="A cat walks on the grass, realistic")
parser.add_argument("--steps", type=int, help="denoising steps (default: 50, or 4 for the tiny pipeline)")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--eager", action="store_true", help="on CUDA, skip torch.compile and CUDA graphs")
parser.add_argument("--out", default="out/hunyuan_video15.gif", help="the GIF; the float frames go beside it as .npy")


def main(argv: list[str] | None = None) -> None:
    """Generate and save; `argv` as on the command line (`None`: `sys.argv`)."""
    args = parser.parse_args(argv)

    # cpu=True without CUDA: only then does accelerate count CPU processes launched with --multi_gpu as one group
    state = PartialState(cpu=not torch.cuda.is_available())
    dtype = torch.bfloat16 if state.device.type == "cuda" else torch.float32
    if args.model:
        pipe = HunyuanVideo15Pipeline.from_pretrained(args.model, dtype=dtype).to(state.device)
        # CFG through the checkpoint's guider: two forwards per step, the prompt's and the negative prompt's
        call = dict(prompt=args.prompt, height=480, width=848, num_frames=121)
    else:  # random weights; prompt embeddings stand in for its missing text encoders
        pipe = tiny.tiny_hunyuan_video15_pipeline(dtype=dtype).to(state.device)
        call = tiny.tiny_call_kwargs("hunyuan_video15", state.device, dtype)
    steps = args.steps or (50 if args.model else 4)

    diffusers_usp.parallelize(pipe)
    if state.device.type == "cuda" and not args.eager:
        pipe.transformer.compile_repeated_blocks(fullgraph=True)
        diffusers_usp.apply_cuda_graphs(pipe)  # after parallelize, so the graphs hold the collectives too
    pipe.set_progress_bar_config(disable=not state.is_main_process)

    def generate(steps: int) -> tuple[np.ndarray, float]:
        state.wait_for_everyone()  # start the clock together: the ranks finish loading at different times
        start = time.perf_counter()
        generator = torch.Generator().manual_seed(args.seed)  # on CPU: the same latents on every rank
        video = pipe(**call, num_inference_steps=steps, generator=generator, output_type="np").frames[0]
        return video, time.perf_counter() - start  # output_type="np" copied it to the host: the GPU is done

    _, warmup = generate(2)  # each transformer input shape is compiled and captured on its first call
    video, seconds = generate(steps)
    state.print(
        f"{state.num_processes} processes: warm-up (compile, capture) {warmup:.1f}s, {steps} steps {seconds:.1f}s"
    )
    if state.is_main_process:  # every rank holds the same video
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        export_to_gif(pipe.video_processor.numpy_to_pil(video), args.out, fps=24)
        np.save(Path(args.out).with_suffix(".npy"), video)  # the float frames, which tests/test_pipeline.py compares
        print(f"saved {args.out}")


if __name__ == "__main__":
    main()
    PartialState().destroy_process_group()  # the process group main() started, if any
