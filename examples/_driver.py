"""Shared driver of the example scripts: parse arguments, build or load a pipeline, parallelize it, time one call,
save the output and, with `--check`, compare it against a single-process run.

The scripts only name a `Family`; a family is data (how to build, load and call one pipeline class), so adding a
model to the examples means adding an entry to `FAMILIES`.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from diffusers import (
    AutoencoderKLWan,
    CogVideoXPipeline,
    DiffusionPipeline,
    FluxPipeline,
    HunyuanVideoPipeline,
    LTXPipeline,
    QwenImagePipeline,
    StableDiffusion3Pipeline,
    WanPipeline,
)
from diffusers.utils import export_to_gif
from PIL import Image

import diffusers_usp
from diffusers_usp import tiny

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}

# Largest |parallel - single-process| allowed on outputs in [0, 1]. In float32 the runs differ only by reassociated
# sums (sharded matmuls and attention see other shapes, so other kernels and blockings), ~1e-6 after a few steps.
# In half precision each reassociation rounds at 8 (bf16) or 11 (fp16) mantissa bits and the differences compound
# over the denoising steps, so only a looser bound separates "rounded differently" from "wrong".
TOLERANCES = {torch.float32: 1e-4, torch.bfloat16: 2e-2, torch.float16: 2e-2}

CHECK_TIMEOUT = timedelta(hours=2)  # a single-device reference run of a real video model is long

TINY_WEIGHTS_SEED = 0  # fixed apart from --seed, so that --seed changes the noise and not the model


@dataclass(frozen=True)
class Family:
    """One pipeline family as the examples run it.

    Args:
        name (`str`): The name printed in reports.
        tiny (`Callable[[int, torch.dtype], DiffusionPipeline]`): Builds the tiny offline pipeline from a seed.
        tiny_embeds (`Callable[..., dict]`): Prompt embeddings that stand in for the tiny pipeline's missing text
            encoder, as keyword arguments of the pipeline call (`dtype=` is passed).
        load (`Callable[[str, torch.dtype], DiffusionPipeline]`): Loads a real pipeline from a hub id or local path.
        tiny_defaults (`dict`): Default `height`, `width`, `steps` (and `frames`) for the tiny pipeline.
        model_defaults (`dict`): The same for a real model.
        guidance (`dict`): The pipeline call's guidance arguments at their usual values (`guidance_scale`, or
            Qwen-Image's `true_cfg_scale`), for the tiny pipeline and a real model alike.
        prompt (`str`): Default prompt for a real model.
        output (`str`): Default output path.
        fps (`int`, *optional*): Frame rate of a video family; `None` for an image family.
        negative_prompt (`str`, *optional*): Default negative prompt for a real model (the tiny pipeline's prompt
            embeddings include negative ones).
    """

    name: str
    tiny: Callable[[int, torch.dtype], DiffusionPipeline]
    tiny_embeds: Callable[..., dict]
    load: Callable[[str, torch.dtype], DiffusionPipeline]
    tiny_defaults: dict
    model_defaults: dict
    guidance: dict
    prompt: str
    output: str
    fps: int | None = None
    negative_prompt: str | None = None


def _load_flux(model: str, dtype: torch.dtype) -> DiffusionPipeline:
    return FluxPipeline.from_pretrained(model, dtype=dtype)


def _load_wan(model: str, dtype: torch.dtype) -> DiffusionPipeline:
    # The VAE stays float32, as diffusers' Wan examples load it; WanPipeline casts latents to the VAE's dtype.
    vae = AutoencoderKLWan.from_pretrained(model, subfolder="vae", dtype=torch.float32)
    return WanPipeline.from_pretrained(model, vae=vae, dtype=dtype)


def _load_sd3(model: str, dtype: torch.dtype) -> DiffusionPipeline:
    return StableDiffusion3Pipeline.from_pretrained(model, dtype=dtype)


def _load_cogvideox(model: str, dtype: torch.dtype) -> DiffusionPipeline:
    return CogVideoXPipeline.from_pretrained(model, dtype=dtype)


def _load_qwenimage(model: str, dtype: torch.dtype) -> DiffusionPipeline:
    return QwenImagePipeline.from_pretrained(model, dtype=dtype)


def _load_hunyuan_video(model: str, dtype: torch.dtype) -> DiffusionPipeline:
    pipe = HunyuanVideoPipeline.from_pretrained(model, dtype=dtype)
    pipe.vae.enable_tiling()  # as diffusers' HunyuanVideo examples: decoding 129 frames at 720p whole needs far more
    return pipe


def _load_ltx(model: str, dtype: torch.dtype) -> DiffusionPipeline:
    return LTXPipeline.from_pretrained(model, dtype=dtype)


# Tiny sizes are chosen so that the sharded token count divides by 2, 3, 4, 6 and 8 ranks: flux and sd3 48x48 and
# qwenimage 96x96 have 12x12 = 144 image tokens, wan 96x96x5 has 2 x 6 x 6 = 72 patches, cogvideox 32x64x9 has
# 3 x 2 x 4 = 24, ltx 32x32x9 has 3 x 8 x 8 = 192 and hunyuan_video 64x64x9 has 3 x 4 x 4 = 48. (The text tokens
# need not divide: they are replicated.) Real defaults are the pipelines' documented ones (ltx and hunyuan_video:
# their pipelines' own call defaults).
FAMILIES = {
    "flux": Family(
        name="flux",
        tiny=tiny.tiny_flux_pipeline,
        tiny_embeds=tiny.tiny_flux_prompt_embeds,
        load=_load_flux,
        tiny_defaults={"height": 48, "width": 48, "steps": 4},
        model_defaults={"height": 1024, "width": 1024, "steps": 28},
        guidance={"guidance_scale": 3.5},
        prompt="A cat holding a sign that says hello world",
        output="out/flux.png",
    ),
    "wan": Family(
        name="wan",
        tiny=tiny.tiny_wan_pipeline,
        tiny_embeds=tiny.tiny_wan_prompt_embeds,
        load=_load_wan,
        tiny_defaults={"height": 96, "width": 96, "frames": 5, "steps": 4},
        model_defaults={"height": 480, "width": 832, "frames": 81, "steps": 50},
        guidance={"guidance_scale": 5.0},
        prompt="A cat walks on the grass, realistic",
        output="out/wan.gif",
        fps=16,
    ),
    "sd3": Family(
        name="sd3",
        tiny=tiny.tiny_sd3_pipeline,
        tiny_embeds=tiny.tiny_sd3_prompt_embeds,
        load=_load_sd3,
        tiny_defaults={"height": 48, "width": 48, "steps": 4},
        model_defaults={"height": 1024, "width": 1024, "steps": 28},
        guidance={"guidance_scale": 3.5},  # SD3.5 Large; SD3 Medium uses 7.0
        prompt="A capybara holding a sign that reads Hello World",
        output="out/sd3.png",
    ),
    "hunyuan_video": Family(
        name="hunyuan_video",
        tiny=tiny.tiny_hunyuan_video_pipeline,
        tiny_embeds=tiny.tiny_hunyuan_video_prompt_embeds,
        load=_load_hunyuan_video,
        tiny_defaults={"height": 64, "width": 64, "frames": 9, "steps": 4},
        model_defaults={"height": 720, "width": 1280, "frames": 129, "steps": 50},
        guidance={"guidance_scale": 6.0},  # embedded guidance, one forward per step
        prompt="A cat walks on the grass, realistic",
        output="out/hunyuan_video.gif",
        fps=24,
    ),
    "cogvideox": Family(
        name="cogvideox",
        tiny=tiny.tiny_cogvideox_pipeline,
        tiny_embeds=tiny.tiny_cogvideox_prompt_embeds,
        load=_load_cogvideox,
        tiny_defaults={"height": 32, "width": 64, "frames": 9, "steps": 4},
        model_defaults={"height": 480, "width": 720, "frames": 49, "steps": 50},
        guidance={"guidance_scale": 6.0},
        prompt="A panda, dressed in a small red jacket and a tiny hat, sits on a wooden stool in a serene bamboo "
        "forest and plays a miniature acoustic guitar",
        output="out/cogvideox.gif",
        fps=8,
    ),
    "qwenimage": Family(
        name="qwenimage",
        tiny=tiny.tiny_qwenimage_pipeline,
        tiny_embeds=tiny.tiny_qwenimage_prompt_embeds,
        load=_load_qwenimage,
        tiny_defaults={"height": 96, "width": 96, "steps": 4},
        model_defaults={"height": 1328, "width": 1328, "steps": 50},
        # Qwen-Image has no guidance embedding: its CFG is `true_cfg_scale`, on only when a negative prompt is given.
        guidance={"true_cfg_scale": 4.0},
        prompt='A coffee shop entrance features a chalkboard sign reading "Qwen Coffee 2 dollars"',
        output="out/qwenimage.png",
        negative_prompt=" ",
    ),
    "ltx": Family(
        name="ltx",
        tiny=tiny.tiny_ltx_pipeline,
        tiny_embeds=tiny.tiny_ltx_prompt_embeds,
        load=_load_ltx,
        tiny_defaults={"height": 32, "width": 32, "frames": 9, "steps": 4},
        model_defaults={"height": 512, "width": 704, "frames": 161, "steps": 50},
        guidance={"guidance_scale": 3.0},
        prompt="A woman with long brown hair smiles at another woman with long blonde hair, close-up, warm light "
        "of the setting sun",
        output="out/ltx.gif",
        fps=24,
        negative_prompt="worst quality, inconsistent motion, blurry, jittery, distorted",
    ),
}


def parse_args(family: Family, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line; size and step defaults depend on whether `--model` is given."""
    video = family.fps is not None
    parser = argparse.ArgumentParser(
        description=f"Ulysses sequence-parallel {family.name} generation. Without --model, a tiny random-weight "
        "pipeline runs offline (its output is noise; it shows the speed and the --check).",
    )
    tiny_d, model_d = family.tiny_defaults, family.model_defaults
    parser.add_argument("--model", help="Hub id or local path of a real pipeline (default: the tiny offline one).")
    parser.add_argument("--prompt", default=family.prompt, help="Prompt for --model (the tiny pipeline has none).")
    parser.add_argument(
        "--negative-prompt",
        default=family.negative_prompt,
        help=f"Negative prompt for --model. Default: {family.negative_prompt!r}.",
    )
    parser.add_argument("--height", type=int, help=f"Default: {tiny_d['height']} tiny, {model_d['height']} --model.")
    parser.add_argument("--width", type=int, help=f"Default: {tiny_d['width']} tiny, {model_d['width']} --model.")
    if video:
        parser.add_argument(
            "--frames",
            type=int,
            help="A multiple of the VAE's temporal compression, plus 1. "
            f"Default: {tiny_d['frames']} tiny, {model_d['frames']} --model.",
        )
    parser.add_argument("--steps", type=int, help=f"Default: {tiny_d['steps']} tiny, {model_d['steps']} --model.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the noise, the same on every rank.")
    parser.add_argument("--dtype", choices=sorted(DTYPES), help="Default: bf16 on CUDA, fp32 otherwise.")
    kind = " (.gif), or a folder for PNG frames." if video else " (PNG)."
    parser.add_argument("--output", default=family.output, help=f"Output file{kind} Default: {family.output}.")
    parser.add_argument(
        "--check",
        action="store_true",
        help="Also run single-process on rank 0 and fail if the outputs differ beyond tolerance.",
    )
    parser.add_argument("--tolerance", type=float, help="Override the --check tolerance (default depends on dtype).")
    args = parser.parse_args(argv)
    for key, value in (model_d if args.model else tiny_d).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def build(family: Family, model: str | None, dtype: torch.dtype, device: torch.device) -> DiffusionPipeline:
    """The tiny pipeline (rebuilt identically from its weight seed) or the loaded model, on `device`."""
    pipe = family.tiny(TINY_WEIGHTS_SEED, dtype) if model is None else family.load(model, dtype)
    return pipe.to(device)


def call_kwargs(family: Family, args: argparse.Namespace, dtype: torch.dtype, device: torch.device) -> dict:
    """Keyword arguments of the pipeline call, apart from the generator."""
    kwargs = {
        "height": args.height,
        "width": args.width,
        "num_inference_steps": args.steps,
        **family.guidance,
        "output_type": "np",  # float arrays in [0, 1], directly comparable for --check
        "return_dict": False,
    }
    if family.fps is not None:
        kwargs["num_frames"] = args.frames
    if args.model is None:
        kwargs.update({k: v.to(device) for k, v in family.tiny_embeds(dtype=dtype).items()})
    else:
        kwargs["prompt"] = args.prompt
        if args.negative_prompt is not None:
            kwargs["negative_prompt"] = args.negative_prompt
    return kwargs


def generate(pipe: DiffusionPipeline, kwargs: dict, seed: int) -> np.ndarray:
    """One pipeline call; `(H, W, 3)` for an image, `(F, H, W, 3)` for a video, floats in [0, 1]."""
    # A CPU generator draws the same latents on every rank whatever its device; ranks given different latents
    # would each hold a slice of a different sequence.
    generator = torch.Generator().manual_seed(seed)
    return pipe(**kwargs, generator=generator)[0][0]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def save(output: np.ndarray, path: str, fps: int | None) -> None:
    """Write an image as PNG, or a video as a GIF (`.gif`) or a folder of PNG frames; neither needs ffmpeg."""
    frames = [Image.fromarray(f) for f in (output.reshape(-1, *output.shape[-3:]) * 255).round().astype(np.uint8)]
    target = Path(path)
    if fps is None:
        target.parent.mkdir(parents=True, exist_ok=True)
        frames[0].save(target)
    elif target.suffix.lower() == ".gif":
        target.parent.mkdir(parents=True, exist_ok=True)
        export_to_gif(frames, str(target), fps=fps)
    else:
        target.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(frames):
            frame.save(target / f"frame_{i:03d}.png")


def main(family_name: str, argv: list[str] | None = None) -> None:
    """Run one example end to end on every rank of the launch (or in a single process).

    Args:
        family_name (`str`): A key of `FAMILIES`.
        argv (`list[str]`, *optional*): Command-line arguments; defaults to `sys.argv[1:]`.
    """
    family = FAMILIES[family_name]
    args = parse_args(family, argv)
    # Under `accelerate launch --multi_gpu` this creates the default process group. Without CUDA, cpu=True is needed
    # for accelerate to record it: otherwise it still initializes a gloo group but reports DistributedType.NO, so
    # every rank is "main" and wait_for_everyone() is a no-op. With --check the other ranks sit in a barrier while
    # rank 0 reruns the whole pipeline alone; with a real model that outlasts the default collective timeout
    # (10 min for NCCL).
    state = PartialState(cpu=not torch.cuda.is_available(), timeout=CHECK_TIMEOUT if args.check else None)
    device = state.device
    dtype = DTYPES[args.dtype] if args.dtype else (torch.bfloat16 if device.type == "cuda" else torch.float32)

    pipe = diffusers_usp.parallelize(build(family, args.model, dtype, device))
    pipe.set_progress_bar_config(disable=not state.is_main_process)
    kwargs = call_kwargs(family, args, dtype, device)

    # Start the clock together: ranks finish loading at different times, and the first collective would otherwise
    # bill the slowest rank's loading to everyone else's generation.
    state.wait_for_everyone()
    _synchronize(device)
    start = time.perf_counter()
    output = generate(pipe, kwargs, args.seed)
    _synchronize(device)
    seconds = time.perf_counter() - start

    frames = f", {args.frames} frames" if family.fps is not None else ""
    sizes = f"{args.height}x{args.width}{frames}, {args.steps} steps"
    state.print(
        f"{family.name}: world size {state.num_processes}, {device}, {str(dtype).removeprefix('torch.')}, {sizes}: "
        f"{seconds:.2f} s, {seconds / args.steps:.3f} s/step (whole call / steps)"
    )
    if state.is_main_process:
        save(output, args.output, family.fps)
        print(f"saved {args.output}")

    failed = False
    if args.check and state.is_main_process:
        # The reference is a fresh, un-parallelized pipeline, so it runs no collectives while the other ranks wait
        # in the barrier below. Free the parallel one first: two copies of a real model may not fit on one device.
        del pipe
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        reference = build(family, args.model, dtype, device)
        expected = generate(reference, kwargs, args.seed)
        diff = float(np.abs(output.astype(np.float64) - expected).max())
        tolerance = args.tolerance if args.tolerance is not None else TOLERANCES[dtype]
        failed = not diff <= tolerance  # NaN fails too
        print(
            f"check: max |parallel - single process| = {diff:.3g}, tolerance {tolerance:g}: "
            f"{'FAILED' if failed else 'ok'}"
        )
    state.wait_for_everyone()  # the other ranks wait here for the reference run (see CHECK_TIMEOUT)
    state.destroy_process_group()
    if failed:
        sys.exit(1)
