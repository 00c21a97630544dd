"""Tasks for the CFG-parallel tests that every rank of a test pool runs. Module-level so that spawned ranks can
unpickle them by name. Every rank builds the same models and inputs from seeds; the references run in the test
process, without CFG parallel or any process group."""

from __future__ import annotations

import warnings
from contextlib import nullcontext
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from torch.profiler import profile

from diffusers_usp import parallelize, tiny
from diffusers_usp.cfg.pending import PendingTensor

from . import core as cases

WAN = dict(frames=2, height=8, width=8)  # 16 tokens
NEGATIVE_TEXT = 5  # the uncond call's text length (the cond call's is 8): the two calls differ in more than values


def wan_calls(steps: int, seed: int = 10) -> list[tuple[str | None, dict]]:
    """(cache context, inputs) of a guided sequential pipeline's transformer calls: per step, a cond call and an
    uncond call with other text, on latents and a timestep that change from step to step."""
    model = tiny.tiny_wan_transformer()
    calls = []
    for step in range(steps):
        cond = tiny.wan_transformer_inputs(model, seed=seed + step, **WAN)
        uncond = dict(cond, encoder_hidden_states=torch.randn(1, NEGATIVE_TEXT, tiny.WAN_TEXT_DIM))
        calls += [("cond", cond), ("uncond", uncond)]
    return calls


def _inputs(inputs: dict, outputs: list) -> dict:
    """`inputs`, where an int `hidden_states` names the output of an earlier call to pass in."""
    latents = inputs["hidden_states"]
    return dict(inputs, hidden_states=outputs[latents]) if isinstance(latents, int) else inputs


def wan_reference(calls: list[tuple[str | None, dict]]) -> list[torch.Tensor]:
    model = tiny.tiny_wan_transformer()
    outputs = []
    with torch.no_grad():
        for _, inputs in calls:
            outputs.append(model(**_inputs(inputs, outputs), return_dict=False)[0])
    return outputs


def sequential(calls: list[tuple[str | None, dict]], use: tuple[int, ...] = (), warm: int = 2, ring_degree: int = 1):
    """Every rank makes `calls` on a tiny Wan transformer parallelized with cfg_degree=2, each in its cache context
    (`None`: no context), then ends the "pipeline call" as diffusers does (`_reset_stateful_cache`).

    Returns {"outputs": plain tensors, "computed": per call whether this rank computed it, "pending": per call
    whether it returned a pending tensor, "events": collectives of the calls after the first `warm`, "warnings": CFG
    warnings}. The outputs of the calls in `use` are read (summed) right after the call, as a
    pipeline reads a cond output when no uncond call follows.
    """
    model = tiny.tiny_wan_transformer()
    computed_by_me = [0]
    model.blocks[0].register_forward_pre_hook(lambda m, a: computed_by_me.__setitem__(0, computed_by_me[0] + 1))
    prof = profile()
    outputs, computed, pending = [], [], []
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        parallelize(model, cfg_degree=2, ring_degree=ring_degree)
        for i, (context, inputs) in enumerate(calls):
            if i == warm:
                prof.__enter__()
            before = computed_by_me[0]
            with model.cache_context(context) if context else nullcontext():
                out = model(**_inputs(inputs, outputs), return_dict=False)[0]
            computed.append(computed_by_me[0] > before)
            pending.append(type(out) is PendingTensor)
            if i in use:
                out.sum()
            outputs.append(out)
        model._reset_stateful_cache()
        if len(calls) > warm:
            prof.__exit__(None, None, None)
    return {
        "outputs": [x.as_subclass(torch.Tensor).clone() for x in outputs],
        "computed": computed,
        "pending": pending,
        "events": cases.gloo_events(prof) if len(calls) > warm else {},
        "warnings": [str(w.message) for w in caught if "CFG parallel" in str(w.message)],
    }


def batched(model: str, shape: dict, calls: int = 2, ring_degree: int = 1, **config):
    """A batched call (one forward on the whole CFG batch) under cfg_degree=2: (output of the last call, its
    collectives, warnings)."""
    transformer, inputs = cases.build(model, shape, **config)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parallelize(transformer, cfg_degree=2, ring_degree=ring_degree)
        with torch.no_grad():
            for _ in range(calls - 1):
                transformer(**inputs, return_dict=False)
            with profile() as prof:
                out = transformer(**inputs, return_dict=False)[0]
    return out, cases.gloo_events(prof), [str(w.message) for w in caught if "CFG parallel" in str(w.message)]


def mesh_layout(seconds: float, cfg: int = 2, ring: int = 1) -> dict:
    """The groups `parallelize(cfg_degree=cfg, ring_degree=ring)` builds on this rank, with their timeouts."""
    from diffusers_usp.groups import ParallelDims

    dims = ParallelDims(tuple(range(dist.get_world_size())), cfg=cfg, ring=ring, timeout=timedelta(seconds=seconds))
    layout = {}
    for axis in ("cfg", "ring", "ulysses", "sequence"):
        group = dims.axis(axis)
        timeout = group.group._get_backend(torch.device("cpu")).options._timeout
        layout[axis] = (dist.get_process_group_ranks(group.group), group.rank, group.size, timeout.total_seconds())
    layout["mesh"] = (dims.mesh.mesh.tolist(), dims.mesh.mesh_dim_names)
    return layout


def refused(cfg_degree: int) -> str:
    try:
        parallelize(tiny.tiny_wan_transformer(), cfg_degree=cfg_degree)
    except ValueError as err:
        return str(err)
    return "no error"


def compiled_whole() -> str:
    """torch.compile of a whole transformer with cfg_degree=2: how it ends on this rank."""
    model = tiny.tiny_wan_transformer()
    inputs = tiny.wan_transformer_inputs(model, **WAN)
    parallelize(model, cfg_degree=2)
    try:
        with torch.no_grad():
            torch.compile(model, fullgraph=True, backend="eager")(**inputs, return_dict=False)
    except Exception as err:  # noqa: BLE001 - Dynamo wraps what the hook raises
        return f"{type(err).__name__}: {err}"
    return "returned"


# -- pipelines -------------------------------------------------------------------------------------------------------

# name: (tiny pipeline, prompt embeddings, call arguments with guidance on, the argument that turns guidance off).
# Sizes whose token counts split over 2 ranks per group. Batched: SD3, CogVideoX. Sequential: Wan, Qwen-Image.
PIPELINES = {
    "sd3": (tiny.tiny_sd3_pipeline, tiny.tiny_sd3_prompt_embeds, dict(height=48, width=48), "guidance_scale"),
    # guidance 3: the first v-prediction step amplifies float32 differences by the guidance (tests/tasks/launched.py)
    "cogvideox": (tiny.tiny_cogvideox_pipeline, tiny.tiny_cogvideox_prompt_embeds,
                  dict(height=32, width=64, num_frames=9, guidance_scale=3.0), "guidance_scale"),
    "wan": (tiny.tiny_wan_pipeline, tiny.tiny_wan_prompt_embeds, dict(height=96, width=96, num_frames=5),
            "guidance_scale"),
    "qwenimage": (tiny.tiny_qwenimage_pipeline, tiny.tiny_qwenimage_prompt_embeds,
                  dict(height=96, width=96, true_cfg_scale=4.0), "true_cfg_scale"),
}  # fmt: skip
STEPS = 2


def run_pipeline(name: str, guided: bool, pipe=None) -> np.ndarray:
    build, embeds, call, switch = PIPELINES[name]
    pipe = pipe if pipe is not None else build()
    call = call if guided else {**call, switch: 1.0}
    generator = torch.Generator().manual_seed(0)
    return pipe(**embeds(), **call, num_inference_steps=STEPS, output_type="np", return_dict=False,
                generator=generator)[0]  # fmt: skip


def pipelines(names: list[str]) -> dict:
    """Each pipeline parallelized with cfg_degree=2 and called twice, guided then unguided: {name: [(output,
    collectives, CFG warnings) of each call]}. A sequential pipeline computes its first guided step on both groups
    (the output structure of its calls is not known yet) and pairs the next; unguided, the pipeline reads the cond
    output with no uncond call after it."""
    results = {}
    for name in names:
        # vae=False: the collectives counted are the transformer's; the VAE split under CFG is tests/test_vae.py's
        pipe = parallelize(PIPELINES[name][0](), cfg_degree=2, vae=False)
        results[name] = []
        for guided in (True, False):
            # The profiler only where collectives are counted: it multiplies a pipeline's time on 2 cores.
            with warnings.catch_warnings(record=True) as caught, profile() if guided else nullcontext() as prof:
                warnings.simplefilter("always")
                image = run_pipeline(name, guided, pipe)
            messages = [str(w.message) for w in caught if "CFG parallel" in str(w.message)]
            results[name].append((image, cases.gloo_events(prof) if guided else None, messages))
    return results


def mismatched_across_groups() -> str:
    """Rank 1 (the other CFG group at world 2, where each Ulysses group is one rank) gets other latents."""
    model, inputs = cases.build("wan", WAN)
    if dist.get_rank() == 1:
        inputs["hidden_states"] = inputs["hidden_states"] + 1e-3
    parallelize(model, cfg_degree=2)
    try:
        with torch.no_grad(), model.cache_context("cond"):
            model(**inputs, return_dict=False)
    except RuntimeError as err:
        return str(err)
    return "no error"


def removed() -> tuple[list[str], bool]:
    """(the hooks left after `remove_parallelism`, whether the model then computes bit for bit what it computed
    before `parallelize`), after a paired step left nothing pending."""
    from diffusers_usp import remove_parallelism

    model = tiny.tiny_wan_transformer()
    calls = wan_calls(2)
    with torch.no_grad():
        before = model(**calls[0][1], return_dict=False)[0]
        parallelize(model, cfg_degree=2)
        for context, inputs in calls:
            with model.cache_context(context):
                model(**inputs, return_dict=False)
        remove_parallelism(model)
        after = model(**calls[0][1], return_dict=False)[0]
    return list(model._diffusers_hook.hooks), torch.equal(before, after)


def compiled_whole_graph_breaks(calls) -> list[torch.Tensor]:
    """torch.compile (graph breaks allowed) of a whole transformer with cfg_degree=2: the outputs of `calls`."""
    model = tiny.tiny_wan_transformer()
    parallelize(model, cfg_degree=2)
    compiled = torch.compile(model, backend="eager")
    outputs = []
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for context, inputs in calls:
            with model.cache_context(context):
                outputs.append(compiled(**inputs, return_dict=False)[0])
        model._reset_stateful_cache()
    return [x.as_subclass(torch.Tensor).clone() for x in outputs]


def within_given_groups(calls) -> dict:
    """`parallelize(cfg_degree=2, group=...)` on two disjoint groups of the world ([0, 1] and [2, 3]), each pairing
    its own calls: the CFG layout inside this rank's group and its outputs."""
    groups = [
        dist.new_group([0, 1], timeout=timedelta(seconds=9)),
        dist.new_group([2, 3], timeout=timedelta(seconds=9)),
    ]
    model = tiny.tiny_wan_transformer()
    parallelize(model, cfg_degree=2, group=groups[dist.get_rank() // 2])
    axis = model._diffusers_hook.get_hook("usp_cfg").axis
    outputs = []
    with torch.no_grad():
        for context, inputs in calls:
            with model.cache_context(context):
                outputs.append(model(**inputs, return_dict=False)[0])
        model._reset_stateful_cache()
    timeout = axis.group._get_backend(torch.device("cpu")).options._timeout.total_seconds()
    return {
        "cfg ranks": dist.get_process_group_ranks(axis.group),
        "timeout": timeout,
        "outputs": [x.as_subclass(torch.Tensor).clone() for x in outputs],
    }


def reparallelized() -> str:
    """`parallelize(cfg_degree=1)` on a model parallelized with cfg_degree=2."""
    model = parallelize(tiny.tiny_wan_transformer(), cfg_degree=2)
    try:
        parallelize(model)
    except ValueError as err:
        return str(err)
    return "no error"
