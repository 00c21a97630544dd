"""LTX-2 text-to-audio-video with Ulysses sequence parallelism: each process holds 1/N of the video tokens and 1/N of
the audio tokens, and the attention between the two streams exchanges both.

    accelerate launch --multi_gpu --num_processes 2 examples/ltx2.py   # tiny random-weight pipeline, CPU, offline
    accelerate launch --num_processes 4 examples/ltx2.py --model Lightricks/LTX-2   # 4 GPUs
    accelerate launch --num_processes 4 examples/ltx2.py --model Lightricks/LTX-2 --eager   # no compile

Without --model the weights are random and the output is noise: it shows the launch and the timing. Both streams'
token counts must divide by the number of processes (the audio one is about 25 per second of video).
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from diffusers import LTX2Pipeline
from diffusers.utils import export_to_gif

import diffusers_usp
from diffusers_usp import tiny

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--model", help="hub id or local path (default: a tiny random-weight pipeline, no download)")
parser.add_argument("--prompt", default="A woman with long brown hair laughs in the warm light of the sunset, close-up")
parser.add_argument("--steps", type=int, help="denoising steps (default: 40, or 4 for the tiny pipeline)")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--eager", action="store_true", help="on CUDA, skip torch.compile and CUDA graphs")
parser.add_argument(
    "--out", default="out/ltx2.gif", help="the GIF; the float frames (.npy) and audio (.audio.npy) beside"
)


def main(argv: list[str] | None = None) -> None:
    """Generate and save; `argv` as on the command line (`None`: `sys.argv`)."""
    args = parser.parse_args(argv)

    # cpu=True without CUDA: only then does accelerate count CPU processes launched with --multi_gpu as one group
    state = PartialState(cpu=not torch.cuda.is_available())
    dtype = torch.bfloat16 if state.device.type == "cuda" else torch.float32
    if args.model:
        pipe = LTX2Pipeline.from_pretrained(args.model, dtype=dtype).to(state.device)
        negative = "worst quality, inconsistent motion, blurry, jittery, distorted"
        # 121 frames at 24 fps: 16 x 16 x 16 = 4096 video tokens, 126 audio tokens (P = 2, 3 or 6)
        call = dict(prompt=args.prompt, negative_prompt=negative, height=512, width=512, num_frames=121)
    else:  # random weights; prompt embeddings stand in for its missing text encoder
        pipe = tiny.tiny_ltx2_pipeline(dtype=dtype).to(state.device)
        call = tiny.tiny_call_kwargs("ltx2", state.device, dtype)
    steps = args.steps or (40 if args.model else 4)

    diffusers_usp.parallelize(pipe)
    if state.device.type == "cuda" and not args.eager:
        pipe.transformer.compile_repeated_blocks(fullgraph=True)
        diffusers_usp.apply_cuda_graphs(pipe)  # after parallelize, so the graphs hold the collectives too
    pipe.set_progress_bar_config(disable=not state.is_main_process)

    def generate(steps: int) -> tuple[np.ndarray, np.ndarray, float]:
        state.wait_for_everyone()  # start the clock together: the ranks finish loading at different times
        start = time.perf_counter()
        generator = torch.Generator().manual_seed(args.seed)  # on CPU: the same latents on every rank
        video, audio = pipe(**call, num_inference_steps=steps, generator=generator, output_type="np", return_dict=False)
        return video[0], audio[0].float().cpu().numpy(), time.perf_counter() - start

    _, _, warmup = generate(2)  # each transformer input shape is compiled and captured on its first call
    video, audio, seconds = generate(steps)
    state.print(
        f"{state.num_processes} processes: warm-up (compile, capture) {warmup:.1f}s, {steps} steps {seconds:.1f}s"
    )
    if state.is_main_process:  # every rank holds the same video and audio
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        export_to_gif(pipe.video_processor.numpy_to_pil(video), args.out, fps=24)
        np.save(Path(args.out).with_suffix(".npy"), video)  # the float frames, which tests/test_pipeline.py compares
        np.save(Path(args.out).with_suffix(".audio.npy"), audio)  # the waveform, [channels, samples]
        print(f"saved {args.out}")


if __name__ == "__main__":
    main()
    PartialState().destroy_process_group()  # the process group main() started, if any
