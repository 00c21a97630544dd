"""What users stack on a pipeline, under `parallelize` (issue #19): each row builds a tiny Flux model or pipeline, adds
one feature, and returns its outputs (numpy) or, where it is refused, the error. `rows(names)` runs many rows in one
pool task; the test process runs the same rows with `parallel=False` for the single-process reference."""

from __future__ import annotations

import tempfile
from collections.abc import Callable

import numpy as np
import torch
from diffusers import FluxTransformer2DModel

from diffusers_usp import parallelize, remove_parallelism, tiny

SHAPE = dict(height=4, width=6)  # 24 image tokens: 2 and 3 ranks hold 12 and 8


def _model(seed: int = 0) -> tuple[torch.nn.Module, dict]:
    model = tiny.tiny_flux_transformer(seed=seed)
    return model, tiny.flux_transformer_inputs(model, seed=seed + 1, **SHAPE)


def _run(model, inputs) -> np.ndarray:
    with torch.no_grad():
        return model(**inputs, return_dict=False)[0].float().numpy()


def _lora(model) -> None:
    from peft import LoraConfig

    torch.manual_seed(7)  # peft draws the LoRA weights from the global RNG: the same on every rank
    config = LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False)
    model.add_adapter(config, adapter_name="a")


def lora(parallel: bool) -> list[np.ndarray]:
    """`add_adapter` before `parallelize`, `set_adapters` with a weight, `fuse_lora`, `unfuse_lora`; and `add_adapter`
    after `parallelize` on another model."""
    model, inputs = _model()
    _lora(model)
    if parallel:
        parallelize(model)
    outs = [_run(model, inputs)]
    model.set_adapters(["a"], weights=[0.5])
    outs.append(_run(model, inputs))
    model.fuse_lora(lora_scale=1.0)
    outs.append(_run(model, inputs))
    model.unfuse_lora()
    outs.append(_run(model, inputs))
    late, inputs = _model()
    if parallel:
        parallelize(late)
    _lora(late)
    return [*outs, _run(late, inputs)]


def fuse_qkv(parallel: bool) -> list[np.ndarray]:
    """`fuse_qkv_projections` before `parallelize`."""
    model, inputs = _model()
    model.fuse_qkv_projections()
    if parallel:
        parallelize(model)
    return [_run(model, inputs)]


def fuse_qkv_after(parallel: bool) -> str:
    """`fuse_qkv_projections` after `parallelize`: refused if it replaces the processors, else exact."""
    model, inputs = _model()
    if parallel:
        parallelize(model)
    model.fuse_qkv_projections()
    try:
        return [_run(model, inputs)]
    except RuntimeError as err:
        return str(err)


def layerwise_casting(parallel: bool) -> list[np.ndarray]:
    """fp8 weight storage, float32 compute, before and after `parallelize`."""
    outs = []
    for before in (True, False):
        model, inputs = _model()
        if before:
            model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32)
        if parallel:
            parallelize(model)
        if not before:
            model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32)
        outs.append(_run(model, inputs))
    return outs


def torchao_int8(parallel: bool) -> list[np.ndarray]:
    """torchao int8 weight-only quantization (CPU) before `parallelize`."""
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    model, inputs = _model()
    quantize_(model, Int8WeightOnlyConfig())
    if parallel:
        parallelize(model)
    return [_run(model, inputs)]


def group_offload(parallel: bool) -> list[np.ndarray]:
    """Block-level group offloading (onload and offload device both CPU here: its hooks, not the copies), before
    and after `parallelize`."""
    outs = []
    for before in (True, False):
        model, inputs = _model()
        offload = dict(onload_device=torch.device("cpu"), offload_type="block_level", num_blocks_per_group=1)
        if before:
            model.enable_group_offload(**offload)
        if parallel:
            parallelize(model)
        if not before:
            model.enable_group_offload(**offload)
        outs.append(_run(model, inputs))
    return outs


def moves_and_shapes(parallel: bool) -> list[np.ndarray]:
    """A dtype move after `parallelize`, a shape that changes between calls, `save_pretrained` after `parallelize`
    (reloaded: the same weights), and `remove_parallelism` then `parallelize` again."""
    model, inputs = _model()
    if parallel:
        parallelize(model)
    outs = [_run(model, inputs)]
    model.to(torch.float64)
    outs.append(_run(model, {k: v.double() if v.is_floating_point() else v for k, v in inputs.items()}))
    model.to(torch.float32)
    outs.append(_run(model, tiny.flux_transformer_inputs(model, seed=3, height=6, width=6, text_len=5)))
    with tempfile.TemporaryDirectory() as path:
        model.save_pretrained(path)
        outs.append(_run(FluxTransformer2DModel.from_pretrained(path), inputs))
    if parallel:
        parallelize(remove_parallelism(model))
    return [*outs, _run(model, inputs)]


def callback_on_step_end(parallel: bool) -> list[np.ndarray]:
    """A tiny Flux pipeline whose `callback_on_step_end` changes the latents alike on every rank."""

    def callback(pipe, i, t, tensors):
        tensors["latents"] = tensors["latents"] * 0.9 + 0.01 * i
        return tensors

    pipe = tiny.tiny_flux_pipeline()
    if parallel:
        parallelize(pipe)
    call = dict(tiny.tiny_call_kwargs("flux"), height=32, width=32)
    out = pipe(**call, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="latent",
               callback_on_step_end=callback, return_dict=False)[0]  # fmt: skip
    return [out.numpy()]


ROWS: dict[str, Callable[[bool], list[np.ndarray] | str]] = {
    f.__name__: f
    for f in (lora, fuse_qkv, fuse_qkv_after, layerwise_casting, torchao_int8, group_offload, moves_and_shapes)
}
ROWS["callback_on_step_end"] = callback_on_step_end


def rows(names: list[str]) -> dict[str, list[np.ndarray] | str]:
    """Every named row under `parallelize`, in one task."""
    return {name: ROWS[name](True) for name in names}


def compile_repeated_blocks(parallel: bool) -> list[np.ndarray]:
    """`compile_repeated_blocks(fullgraph=True)` after `parallelize` (Dynamo's `eager` backend: the tracing, with the
    collectives inside the blocks, without Inductor's compile time)."""
    model, inputs = _model()
    if parallel:
        parallelize(model)
    model.compile_repeated_blocks(fullgraph=True, backend="eager")
    return [_run(model, inputs), _run(model, tiny.flux_transformer_inputs(model, seed=4, **SHAPE))]


ROWS["compile_repeated_blocks"] = compile_repeated_blocks
