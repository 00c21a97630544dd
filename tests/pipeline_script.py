"""Run under `accelerate launch --multi_gpu --num_processes N`: tiny Flux and Wan pipelines, parallelized, saved by
rank 0 as .npy files in the folder given as argv[1] for the test to compare with a single-process run."""

import sys
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState

import diffusers_usp
from diffusers_usp import tiny

# Sizes whose token counts split over 2, 3 and 4 ranks (Flux 12x12 = 144 image tokens; Wan 2x6x6 = 72).
FLUX_CALL = dict(height=48, width=48, num_inference_steps=2, output_type="np")
WAN_CALL = dict(height=96, width=96, num_frames=5, num_inference_steps=2, output_type="np")


def run_flux(pipe) -> np.ndarray:
    return pipe(**tiny.tiny_flux_prompt_embeds(seq=8), **FLUX_CALL, generator=torch.Generator().manual_seed(0)).images


def run_wan(pipe) -> np.ndarray:
    return pipe(**tiny.tiny_wan_prompt_embeds(seq=8), **WAN_CALL, generator=torch.Generator().manual_seed(0)).frames


def main(out: Path) -> None:
    # cpu=True on a machine without CUDA: a plain PartialState() there makes a process group but reports one process.
    state = PartialState(cpu=not torch.cuda.is_available())
    results = {
        "flux": run_flux(diffusers_usp.parallelize(tiny.tiny_flux_pipeline())),
        "wan": run_wan(diffusers_usp.parallelize(tiny.tiny_wan_pipeline())),
    }
    if state.is_main_process:
        for name, array in results.items():
            np.save(out / f"{name}.npy", array)
    state.wait_for_everyone()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
