"""Tasks for the Sana tests: the input modes of diffusers' own Sana and Sana-Video tests and pipelines, each run
under `parallelize` and compared on every rank with the same model run whole (before `parallelize`)."""

from __future__ import annotations

import torch
import zoo
from zoo.sana_video import SANA_VIDEO

from diffusers_usp import parallelize
from diffusers_usp.tiny import tiny_sana_transformer

from .core import CollectiveCounter, gloo_events


def _mask(g: torch.Generator, batch: int, text: int) -> torch.Tensor:
    """`[B, T]` text padding masks of different lengths per sample, as a tokenizer padding to a fixed length gives."""
    lengths = torch.randint(1, text + 1, (batch,), generator=g)
    lengths[0] = text - 2
    return (torch.arange(text)[None] < lengths[:, None]).long()


def _sana(mode: str):
    """A tiny Sana and one forward's inputs in one of its input modes."""
    config = {
        "batch2_mask": {},
        # Sana Sprint: guidance embedding, QK norm; odd grid (5 x 3 rows, columns), rows 2, 2, 1 at 3 ranks
        "sprint": dict(guidance_embeds=True, qk_norm="rms_norm_across_heads"),
        # the 2K/4K models' sin-cos positions, added by the patch embedding to the whole grid before the split
        "pos_embed": dict(interpolation_scale=1.0),
        "controlnet": dict(num_layers=2),
        "patch2": dict(patch_size=2),
        "too_few_rows": {},
    }[mode]
    model = tiny_sana_transformer(**config)
    g = torch.Generator().manual_seed(1)
    batch, rows, cols, text = 2, 6, 4, 7
    if mode == "sprint":
        rows, cols = 5, 3
    if mode == "patch2":
        rows, cols = 10, 8  # 5 x 4 patches
    if mode == "too_few_rows":
        rows = 2
    inputs = {
        "hidden_states": torch.randn(batch, 4, rows, cols, generator=g),
        "encoder_hidden_states": torch.randn(batch, text, model.config.caption_channels, generator=g),
        "timestep": torch.rand(batch, generator=g) * 1000,
        "encoder_attention_mask": _mask(g, batch, text),
    }
    if mode == "sprint":
        inputs["guidance"] = torch.full((batch,), 4.5)
    if mode == "controlnet":
        inputs["controlnet_block_samples"] = (torch.randn(batch, rows * cols, 16, generator=g),)
    return model, inputs


def _sana_video(mode: str):
    """A tiny Sana-Video and one forward's inputs in one of its input modes."""
    model = zoo.CASES["SanaVideoTransformer3DModel"].model("SanaVideoTransformer3DModel")
    g = torch.Generator().manual_seed(1)
    batch, frames, text = 2, 5, 7
    if mode == "too_few_frames":
        frames = 2
    inputs = {
        "hidden_states": torch.randn(batch, 4, frames, 4, 6, generator=g),  # 2 x 3 patches per frame
        "encoder_hidden_states": torch.randn(batch, text, SANA_VIDEO["caption_channels"], generator=g),
        "timestep": torch.randint(0, 1000, (batch,), generator=g),
        "encoder_attention_mask": _mask(g, batch, text),
    }
    if mode == "i2v":  # the image-to-video pipeline: a timestep per token, 0 on the conditioning first frame
        mask = torch.zeros(batch, 1, frames, 2, 3)
        mask[:, :, 0] = 1.0
        inputs["timestep"] = torch.tensor([700.0, 300.0]).view(batch, 1, 1, 1, 1).expand_as(mask) * (1 - mask)
    return model, inputs


def sana_mode(cls: str, mode: str, ring_degree: int = 1) -> tuple[float, dict[str, int]]:
    """(max abs error against the whole model on this rank, the collectives of the parallel forward)."""
    model, inputs = (_sana if cls == "sana" else _sana_video)(mode)
    with torch.no_grad():
        want = model(**inputs, return_dict=False)[0]
        parallelize(model, ring_degree=ring_degree)
        model(**inputs, return_dict=False)  # the first forward adds the one-time input check
        with CollectiveCounter() as prof:
            got = model(**inputs, return_dict=False)[0]
    return (got - want).abs().max().item(), gloo_events(prof)


def sana_refused(cls: str, mode: str) -> str:
    """The error this rank raises for an input mode `parallelize` refuses ("" if none)."""
    model, inputs = (_sana if cls == "sana" else _sana_video)(mode)
    parallelize(model)
    try:
        with torch.no_grad():
            model(**inputs, return_dict=False)
    except ValueError as err:
        return str(err)
    return ""


def sana_pipeline_cfg_and_heads(cfg_degree: int) -> tuple[float, float]:
    """The tiny Sana pipeline's two steps under `parallelize(pipe, cfg_degree=...)`, and with bare `USPProcessor`s
    (the heads role: the sequence whole on every rank), each as max abs error against the pipeline run whole."""
    import numpy as np

    from diffusers_usp import USPProcessor

    from . import launched

    want = launched.run("sana", launched.build("sana"))
    got = launched.run("sana", parallelize(launched.build("sana"), cfg_degree=cfg_degree))
    pipe = launched.build("sana")
    pipe.transformer.set_attn_processor({k: USPProcessor(p) for k, p in pipe.transformer.attn_processors.items()})
    heads = launched.run("sana", pipe)
    return float(np.abs(got - want).max()), float(np.abs(heads - want).max())
