"""Tasks for the step-cache tests that every rank of a test pool runs (module-level, so that spawned ranks unpickle
them by name). `calls` also gives the test process its single-process reference: the same calls with no process
group."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import torch
from diffusers.hooks import (
    FasterCacheConfig,
    FirstBlockCacheConfig,
    MagCacheConfig,
    PyramidAttentionBroadcastConfig,
    TaylorSeerCacheConfig,
)

from diffusers_usp import parallelize, remove_parallelism
from diffusers_usp.tiny import flux_transformer_inputs, tiny_flux_transformer

SHAPE = dict(height=6, width=6)  # 36 image tokens: 2, 3 and 4 ranks hold 18, 12 and 9
SHARE = 9  # the last 9 tokens: all of the last rank's at 4 ranks, part of it at 2 and 3
THRESHOLD = 0.3
# How far each call moves the last tokens from the first call's. One process measures a relative change of the first
# block's residual of 0.25 for the second call (skip: below THRESHOLD) and 0.37 for the third (compute), while the
# first ranks measure 0.11 to 0.17 and the last 0.39 to 1.06 (test_caches checks that they straddle THRESHOLD).
SCALES = (0.0, 1.0, 8.0)
NOW = [1000]  # the timestep the schedule-based caches read: 1000 (outside their skip range) at the first call, then 500


def config(name: str):
    if name == "fbc":
        return FirstBlockCacheConfig(threshold=THRESHOLD)
    if name == "mag-calibrate":
        return MagCacheConfig(calibrate=True, num_inference_steps=len(SCALES) + 1)  # + 1: it clears them at the end
    if name == "mag":  # flat ratios: computes the first step, then skips while the accumulated error allows
        return MagCacheConfig(mag_ratios=[1.0] * len(SCALES), num_inference_steps=len(SCALES), retention_ratio=0.0)
    if name == "taylorseer":
        return TaylorSeerCacheConfig(cache_interval=2, disable_cache_before_step=1)
    if name == "pab":  # skips every other call of each attention after the first step
        return PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=2,
            spatial_attention_timestep_skip_range=(-1, 900),
            current_timestep_callback=lambda: NOW[0],
        )
    if name == "fastercache":
        return FasterCacheConfig(
            spatial_attention_block_skip_range=2,
            spatial_attention_timestep_skip_range=(-1, 900),
            current_timestep_callback=lambda: NOW[0],
            is_guidance_distilled=True,  # Flux: no unconditional batch
        )
    raise ValueError(name)


def inputs(model, batch: int = 1, offset: float = 0.0) -> list[dict]:
    """One call's inputs per `SCALES`: the same inputs but for noise added to the last `SHARE` tokens."""
    base = flux_transformer_inputs(model, batch=batch, seed=1, **SHAPE)
    base["timestep"] = torch.full_like(base["timestep"], 0.5)
    noise = torch.randn(base["hidden_states"][:, -SHARE:].shape, generator=torch.Generator().manual_seed(5))
    out = []
    for scale in SCALES:
        hidden = base["hidden_states"].clone()
        hidden[:, -SHARE:] += scale * noise + offset
        out.append(dict(base, hidden_states=hidden))
    return out


def calls(cache: str | None, parallel: dict | None = None, when: str = "before", contexts=("step",)) -> list:
    """Every call of `SCALES` in each cache context of `contexts` (per call, one after the other; "uncond" inputs
    offset so the two branches differ), with `cache` enabled `when` ("before" or "after" `parallelize`). Returns the
    outputs, and MagCache's calibration ratios where calibrating."""
    model = tiny_flux_transformer()
    if cache and when == "before":
        model.enable_cache(config(cache))
    if parallel is not None:
        parallelize(model, timeout=timedelta(seconds=20), **parallel)
    if cache and when == "after":
        model.enable_cache(config(cache))
    batch = 2 if contexts == ("cond_uncond",) else 1
    per_context = {name: inputs(model, batch, offset=0.5 * (name == "uncond")) for name in contexts}
    outputs, ratios = [], []
    with torch.no_grad():
        for i in range(len(SCALES)):
            NOW[0] = 1000 if i == 0 else 500
            for name in contexts:
                with model.cache_context(name):
                    outputs.append(model(**per_context[name][i], return_dict=False)[0])
                    if cache == "mag-calibrate":
                        head = model.transformer_blocks[0]._diffusers_hook.hooks["mag_cache_leader_block_hook"]
                        ratios = list(head.state_manager.get_state().calibration_ratios)
    outputs = [np.asarray(torch.as_tensor(o).clone()) for o in outputs]  # pending CFG outputs are filled by now
    if parallel is not None and cache:
        model._reset_stateful_cache()
        model.disable_cache()  # then the model runs uncached, still exact: checked by the caller
        with torch.no_grad(), model.cache_context("step"):
            outputs.append(np.asarray(model(**per_context[contexts[0]][-1], return_dict=False)[0]))
        remove_parallelism(model)
    return [outputs, ratios]


def refused_under_cfg(cache: str, contexts: tuple[str, ...]) -> str:
    """`cache` under cfg_degree=2, called in `contexts` in turn: the error message, or "no error"."""
    model = tiny_flux_transformer()
    model.enable_cache(config(cache))
    parallelize(model, cfg_degree=2, timeout=timedelta(seconds=20))
    x = inputs(model)[0]
    try:
        with torch.no_grad():
            for name in contexts:
                with model.cache_context(name):
                    torch.as_tensor(model(**x, return_dict=False)[0]).clone()
    except RuntimeError as err:
        return str(err)
    return "no error"


def debug_cfg():
    model = tiny_flux_transformer()
    model.enable_cache(config("fbc"))
    parallelize(model, cfg_degree=2, timeout=timedelta(seconds=20))
    x = inputs(model)[0]
    log = []
    hook = model._diffusers_hook.hooks["usp_caches"]
    with torch.no_grad():
        for name in ("cond", "uncond", "cond", "uncond", "cond", "cond"):
            with model.cache_context(name):
                out = model(**x, return_dict=False)[0]
                log.append(
                    (
                        name,
                        model._diffusers_hook.hooks["usp_cfg"].kind,
                        hook.paired,
                        len(__import__("diffusers_usp.caches").caches._cache_hooks(model)),
                    )
                )
            torch.as_tensor(out).clone()
    return log


def sea_cache_wan(threshold: float | None, parallel: bool = True) -> np.ndarray:
    """A tiny Wan pipeline (guided: cond and uncond contexts) with SeaCache at `threshold` (None: no cache)."""
    from diffusers import SeaCacheConfig

    from diffusers_usp import tiny

    pipe = tiny.tiny_wan_pipeline()
    if threshold is not None:
        pipe.transformer.enable_cache(SeaCacheConfig(threshold=threshold))
    if parallel:
        parallelize(pipe, timeout=timedelta(seconds=20))
    call = dict(tiny.tiny_call_kwargs("wan"), height=32, width=32)
    return pipe(**call, num_inference_steps=5, generator=torch.Generator().manual_seed(0), output_type="np")[0]
