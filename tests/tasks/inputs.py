"""Tasks for the per-forward input check (issue #19), run by every rank of a test pool."""

from __future__ import annotations

import torch
import torch.distributed as dist

from diffusers_usp import parallelize, tiny


def latents_changed_after_step(step: int, check_inputs: bool = True, steps: int = 3) -> str:
    """A tiny Flux pipeline whose `callback_on_step_end` changes rank 0's latents after `step`: every rank must raise
    (returns the error message, or "no error")."""

    def callback(pipe, i, t, tensors):
        if i == step and dist.get_rank() == 0:
            tensors["latents"] = tensors["latents"] + 1e-3
        return tensors

    pipe = parallelize(tiny.tiny_flux_pipeline(), check_inputs=check_inputs)
    try:
        pipe(**tiny.tiny_call_kwargs("flux"), num_inference_steps=steps, generator=torch.Generator().manual_seed(0),
             output_type="latent", callback_on_step_end=callback)  # fmt: skip
    except RuntimeError as err:
        return str(err)
    return "no error"


def prompt_differs_in_second_call(model: str) -> list[str]:
    """Two transformer calls, the second with another prompt embedding on the last rank, then a third call: the
    outcome of each."""
    from .core import build

    transformer, inputs = build(model, dict(frames=2, height=4, width=4) if model == "wan" else dict(height=4, width=6))
    parallelize(transformer)
    outcomes = []
    for call in range(3):
        x = dict(inputs)
        if call == 1 and dist.get_rank() == dist.get_world_size() - 1:
            x["encoder_hidden_states"] = x["encoder_hidden_states"] * 1.5
        try:
            with torch.no_grad():
                transformer(**x, return_dict=False)
            outcomes.append("ok")
        except RuntimeError as err:
            outcomes.append(str(err))
    return outcomes
