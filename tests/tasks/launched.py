"""Run under `accelerate launch --multi_gpu --num_processes N`: every tiny pipeline family, parallelized, then every
example's `main`, all in one launch (each launch imports torch and diffusers again on every rank: seconds of CPU).
Rank 0 saves the outputs as .npy files in the folder given as argv[1], for `tests/test_pipeline.py` to compare with
single-process runs."""

import importlib.util
import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from accelerate import PartialState
from diffusers import DiffusionPipeline

import diffusers_usp
from diffusers_usp import tiny

CONTROL_IMAGE = torch.linspace(0, 1, 3 * 48 * 48).reshape(1, 3, 48, 48)


def _multi_controlnet(pipe: DiffusionPipeline) -> DiffusionPipeline:
    """`pipe` rebuilt with its ControlNet and a second one of other weights, as a multi-ControlNet."""
    nets = [pipe.controlnet, tiny.tiny_flux_controlnet(seed=7)]
    multi = type(pipe)(**{**pipe.components, "controlnet": nets})
    multi.set_progress_bar_config(disable=True)
    return multi


# family: (tiny pipeline, its prompt embeddings, call arguments). Sizes whose image/video token counts split over 2, 3
# and 4 ranks. Every family but Flux runs CFG, i.e. batch 2 or two forwards per step.
FAMILIES: dict[str, tuple[Callable[[], DiffusionPipeline], Callable[[], dict], dict]] = {
    # 12x12 = 144 packed image tokens
    "flux": (tiny.tiny_flux_pipeline, tiny.tiny_flux_prompt_embeds, dict(height=48, width=48)),
    # the same with a ControlNet, parallelized too: its residuals are gathered, then split again by the transformer.
    # The control image is a fixed gradient, the same on every rank. The union ControlNet prepends a mode token to
    # the text inside its forward, which the text must be whole for.
    "flux_controlnet": (tiny.tiny_flux_controlnet_pipeline, tiny.tiny_flux_prompt_embeds,
                        dict(height=48, width=48, controlnet_conditioning_scale=0.8, control_image=CONTROL_IMAGE)),
    "flux_controlnet_union": (lambda: tiny.tiny_flux_controlnet_pipeline(num_mode=3), tiny.tiny_flux_prompt_embeds,
                              dict(height=48, width=48, control_image=CONTROL_IMAGE, control_mode=2)),
    # two ControlNets, which the pipeline wraps in a FluxMultiControlNetModel: each net is parallelized
    "flux_multi_controlnet": (lambda: _multi_controlnet(tiny.tiny_flux_controlnet_pipeline()),
                              tiny.tiny_flux_prompt_embeds,
                              dict(height=48, width=48, control_image=[CONTROL_IMAGE, 1 - CONTROL_IMAGE],
                                   controlnet_conditioning_scale=[0.6, 0.4])),
    # 2x6x6 = 72 patches
    "wan": (tiny.tiny_wan_pipeline, tiny.tiny_wan_prompt_embeds, dict(height=96, width=96, num_frames=5)),
    # 12x12 = 144 patches
    "sd3": (tiny.tiny_sd3_pipeline, tiny.tiny_sd3_prompt_embeds, dict(height=48, width=48)),
    "sd3_controlnet": (tiny.tiny_sd3_controlnet_pipeline, tiny.tiny_sd3_prompt_embeds,
                       dict(height=48, width=48, control_image=CONTROL_IMAGE, controlnet_conditioning_scale=0.8)),
    # 3x2x4 = 24 patches, with the rotary table the pipeline builds. Guidance 3, not the default 6: at the first
    # v-prediction DDIM step (zero terminal SNR) the denoised latent is the guided prediction itself, so the
    # transformer's float32 differences (~4e-7 a forward) reach the output amplified by the guidance. At 6, one of 6
    # seeds ended at 1.05e-5; at 3 the largest of 6 was 4.7e-6 (seed 0: 2.5e-6).
    "cogvideox": (tiny.tiny_cogvideox_pipeline, tiny.tiny_cogvideox_prompt_embeds,
                  dict(height=32, width=64, num_frames=9, guidance_scale=3.0)),
    # 12x12 = 144 packed tokens; true CFG: a forward with 10 masked text tokens, then one with 5
    "qwenimage": (tiny.tiny_qwenimage_pipeline, tiny.tiny_qwenimage_prompt_embeds,
                  dict(height=96, width=96, true_cfg_scale=4.0)),
    "qwenimage_controlnet": (tiny.tiny_qwenimage_controlnet_pipeline, tiny.tiny_qwenimage_prompt_embeds,
                             dict(height=96, width=96, true_cfg_scale=4.0, controlnet_conditioning_scale=0.8,
                                  control_image=torch.linspace(0, 1, 3 * 96 * 96).reshape(1, 3, 96, 96))),
    # 3x8x8 = 192 latent pixels
    "ltx": (tiny.tiny_ltx_pipeline, tiny.tiny_ltx_prompt_embeds, dict(height=32, width=32, num_frames=9)),
    # 3x8x8 = 192 video and 24 audio tokens; CFG, spatio-temporal guidance (block 1) and modality guidance: 4
    # forwards per step, two of them skipping attention in block 1 or the audio-video attention
    "ltx2": (tiny.tiny_ltx2_pipeline, tiny.tiny_ltx2_prompt_embeds,
             dict(height=32, width=32, num_frames=9, frame_rate=9.375, spatio_temporal_guidance_blocks=[1])),
    # 3x4x4 = 48 patches; the prompt keeps 2 padded tokens, masked in every joint attention
    "hunyuan_video": (tiny.tiny_hunyuan_video_pipeline, tiny.tiny_hunyuan_video_prompt_embeds,
                      dict(height=64, width=64, num_frames=9)),
    # 4x3 = 12 latent tokens in 4 rows (split by whole rows); CFG batch of 2 with padded prompts; the DC-AE decode
    # is split by rows too
    "sana": (tiny.tiny_sana_pipeline, tiny.tiny_sana_prompt_embeds,
             dict(height=128, width=96, negative_prompt=None, use_resolution_binning=False)),
    # 12x12 = 144 image tokens; CFG as two forwards per step, each with its own padded prompt (8 and 6 tokens) and
    # Chroma's padding vector over [text, image], which every block expands to a dense per-query mask
    "chroma": (tiny.tiny_chroma_pipeline, tiny.tiny_chroma_prompt_embeds,
               dict(height=48, width=48, guidance_scale=4.0)),
    # 2x4x6 = 48 latent pixels; the text is 729 image tokens (masked: text-to-video), 4 ByT5 and 8 prompt tokens, 3
    # of them padded: a per-query padding mask in every joint attention, for the prompt's and the negative's forward
    "hunyuan_video15": (tiny.tiny_hunyuan_video15_pipeline, tiny.tiny_hunyuan_video15_prompt_embeds,
                        dict(height=32, width=48, num_frames=5)),
}  # fmt: skip


def build(name: str) -> DiffusionPipeline:
    return FAMILIES[name][0]()


def run(name: str, pipe: DiffusionPipeline) -> np.ndarray:
    """Two denoising steps; `(1, H, W, 3)` for an image family, `(1, F, H, W, 3)` for a video one, floats in [0, 1]."""
    _, embeds, call = FAMILIES[name]
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)  # the SD3 ControlNet pipeline samples the control latents from the global RNG
    return pipe(**embeds(), **call, num_inference_steps=2, output_type="np", return_dict=False, generator=generator)[0]


EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
# (example, its options): every example's default, the Wan example's CFG-parallel and ring flags, and the Flux.2
# example's weight sharding
_PLAIN = (
    "flux",
    "wan",
    "sd3",
    "cogvideox",
    "qwenimage",
    "ltx",
    "ltx2",
    "hunyuan_video",
    "hunyuan_video15",
    "sana",
    "chroma",
)
EXAMPLES = [(name, ()) for name in _PLAIN] + [
    ("wan", ("--cfg-parallel",)),
    ("wan", ("--ring-degree", "2")),
    ("flux2", ("--shard-weights",)),
]


def example_id(name: str, options: tuple[str, ...]) -> str:
    """`wan --cfg-parallel` -> "wan-cfg-parallel": the stem of the example's outputs."""
    return "-".join((name, *(o.lstrip("-") for o in options)))


def example_suffix(name: str) -> str:
    """The file the example saves beside its .npy: a GIF for a video family, a PNG for an image one."""
    return ".gif" if "num_frames" in tiny.tiny_call_kwargs(name) else ".png"


def load_example(name: str) -> ModuleType:
    """`examples/<name>.py` as a module, without running its `__main__` block (which would parse `sys.argv`)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_examples(out: Path, rank: int) -> None:
    """Every example's `main` in turn, as `accelerate launch ... examples/<name>.py <options> --out ...` runs it, its
    outputs in `out`. A failure is written to `<id>.rank<r>.error` and the next example runs, so one broken example
    fails only its test."""
    out.mkdir(exist_ok=True)
    for name, options in EXAMPLES:
        stem = example_id(name, options)
        try:
            load_example(name).main([*options, "--out", str(out / f"{stem}{example_suffix(name)}")])
        except Exception:  # noqa: BLE001 - reported to the test through the file
            (out / f"{stem}.rank{rank}.error").write_text(traceback.format_exc())


def main(out: Path) -> None:
    # cpu=True on a machine without CUDA: a plain PartialState() there makes a process group but reports one process.
    state = PartialState(cpu=not torch.cuda.is_available())
    results, tokens = {}, {}
    for name in FAMILIES:
        pipe = diffusers_usp.parallelize(build(name))
        seen = tokens[name] = []  # tokens reaching the ControlNet's first residual projection, if any
        if hasattr(pipe, "controlnet"):
            net = getattr(pipe.controlnet, "nets", [pipe.controlnet])[-1]  # of a multi-ControlNet, the last one
            net.controlnet_blocks[0].register_forward_pre_hook(lambda m, a, seen=seen: seen.append(a[0].shape[1]))
        results[name] = run(name, pipe)
    if state.is_main_process:
        for name, array in results.items():
            np.save(out / f"{name}.npy", array)
        (out / "controlnet_tokens.json").write_text(json.dumps(tokens))
    state.wait_for_everyone()
    run_examples(out / "examples", state.process_index)
    state.wait_for_everyone()
    state.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
