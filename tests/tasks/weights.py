"""Tasks for the weight-sharding tests (`parallelize(..., shard_weights=True)`) that every rank of a test pool runs.
Module-level so that spawned ranks can unpickle them by name. One task per world size runs every case, since each pool
task costs a round trip; every rank builds the same models and inputs from seeds, and the single-process references
run in the test process."""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from diffusers_usp import apply_cuda_graphs, parallelize, remove_parallelism, tiny
from diffusers_usp.weights import repeated_blocks

FLUX = dict(height=6, width=6, text_len=8)  # 36 image tokens; the text is sharded at 2 and 4, replicated at 3
WAN = dict(frames=2, height=8, width=8)
# Guidance per step. The unguided last step runs on CFG group 0 only and is broadcast to group 1, where a gather of
# weights over all ranks would wait for group 1 forever.
CFG_STEPS = [True, True, False]


def flux_inputs(seed: int = 1) -> dict:
    return tiny.flux_transformer_inputs(tiny.tiny_flux_transformer(), seed=seed, **FLUX)


def wan_calls() -> list[tuple[str, dict]]:
    """(cache context, inputs) of a sequential CFG pipeline's calls: cond and uncond per guided step, cond only in an
    unguided one."""
    model, calls = tiny.tiny_wan_transformer(), []
    for step, guided in enumerate(CFG_STEPS):
        cond = tiny.wan_transformer_inputs(model, seed=20 + step, **WAN)
        calls.append(("cond", cond))
        if guided:
            text = torch.randn(1, 5, tiny.WAN_TEXT_DIM, generator=torch.Generator().manual_seed(step))
            calls.append(("uncond", dict(cond, encoder_hidden_states=text)))
    return calls


def tiny_t5():
    """A tiny random `T5EncoderModel` (2 blocks, tied input embeddings) and its input ids."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=64, d_model=32, d_kv=8, num_heads=4, num_layers=2, d_ff=64, dropout_rate=0.0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        encoder = T5EncoderModel(config).eval()
    return encoder, torch.arange(12).reshape(1, 12) % 64


def shard_fraction(model: torch.nn.Module) -> list[float]:
    """Per `fully_shard` unit (each repeated block, then the rest of the model): the fraction of its parameter
    elements this rank stores, counted from the local shards."""
    blocks = [block for blocks in repeated_blocks(model) for block in blocks]
    in_blocks = {id(p) for block in blocks for p in block.parameters()}
    rest = [p for p in model.parameters() if id(p) not in in_blocks]
    fractions = []
    for params in [list(block.parameters()) for block in blocks] + [rest]:
        assert all(isinstance(p, DTensor) for p in params), "a parameter was left whole"
        fractions.append(sum(p.to_local().numel() for p in params) / sum(p.numel() for p in params))
    return fractions


def _flux(**kwargs) -> np.ndarray:
    model = tiny.tiny_flux_transformer()
    parallelize(model, **kwargs)
    with torch.no_grad():
        return model(**flux_inputs(), return_dict=False)[0].numpy()


def all_cases() -> dict:
    """Every case at this world size; numpy arrays and plain values only."""
    world, out = dist.get_world_size(), {}

    # Flux: sharded against USP alone (the gather is exact, so bit for bit) and, in the test, against one process.
    out["flux_usp"] = _flux()
    model = tiny.tiny_flux_transformer()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    inputs = flux_inputs()
    with torch.no_grad():  # the whole model on this rank, for the bit-for-bit check after remove_parallelism
        out["flux_whole"] = model(**inputs, return_dict=False)[0].numpy()
    parallelize(model, shard_weights=True)
    out["flux_fractions"] = shard_fraction(model)
    with torch.no_grad():
        out["flux_sharded"] = model(**inputs, return_dict=False)[0].numpy()
    with torch.inference_mode():  # FSDP2 under inference_mode too, and a second call (gathers, frees, gathers again)
        out["flux_sharded_inference_mode"] = model(**inputs, return_dict=False)[0].numpy()
    out["flux_fractions_after"] = shard_fraction(model)  # nothing left whole after a forward, the root included
    try:
        apply_cuda_graphs(model)
        out["graphs_error"] = ""
    except ValueError as error:
        out["graphs_error"] = str(error)

    # remove_parallelism: plain full tensors equal to the originals, the original class, parallelize possible again.
    remove_parallelism(model)
    out["removed_class"] = type(model).__name__ + "," + type(model.transformer_blocks[0]).__name__
    out["removed_same"] = all(
        type(p) is torch.nn.Parameter and torch.equal(p, before[name]) for name, p in model.named_parameters()
    )
    with torch.no_grad():
        out["flux_removed"] = model(**inputs, return_dict=False)[0].numpy()
    parallelize(model, shard_weights=True)
    with torch.no_grad():
        out["flux_resharded"] = model(**inputs, return_dict=False)[0].numpy()
    remove_parallelism(model)
    parallelize(model, shard_weights=True)
    remove_parallelism(model)  # before any forward: FSDP2's lazy initialisation never ran
    with torch.no_grad():
        out["flux_removed_unused"] = model(**inputs, return_dict=False)[0].numpy()

    # A ring (ring 2 x Ulysses P/2) shards over all ranks of the sequence.
    if world % 2 == 0:
        out["flux_ring"] = _flux(ring_degree=2, shard_weights=True)
        out["flux_ring_usp"] = _flux(ring_degree=2)

    # CFG parallel, sequential calls, a step with guidance off (which runs on CFG group 0 only: a gather over all
    # ranks would hang there).
    if world % 2 == 0:
        out["wan_cfg"] = wan_cfg()
    out["t5"] = t5_sharded()
    out["wan_bf16"] = [wan_bf16(shard) for shard in (False, True)]
    out.update(stacked())
    return out


def lora_flux() -> torch.nn.Module:
    """The tiny Flux transformer with a LoRA (peft) on its attention projections, random (not zero) and seeded."""
    from peft import LoraConfig

    model = tiny.tiny_flux_transformer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        model.add_adapter(LoraConfig(r=4, target_modules=["to_q", "to_k", "to_v"], init_lora_weights=False))
    return model


def cached_run(model: torch.nn.Module, calls: int = 2) -> np.ndarray:
    """`calls` forwards in one cache context; the output of the last."""
    with torch.no_grad(), model.cache_context("cond"):
        for _ in range(calls):
            output = model(**flux_inputs(), return_dict=False)[0]
    return output.numpy()


def stacked() -> dict:
    """What users stack on a pipeline, with sharded weights: a LoRA applied before sharding, and diffusers'
    FirstBlockCache enabled before `parallelize` (its hooks under FSDP2's) or after (FSDP2's classes under its hooks).
    The cache's threshold skips the later blocks on the second call on every rank alike, so the output is exactly one
    process's; the skipped blocks (the next one prefetched, never run) must not unbalance the ranks' gathers."""
    from diffusers import FirstBlockCacheConfig

    out = {}
    model = lora_flux()
    parallelize(model, shard_weights=True)
    out["lora"] = cached_run(model, calls=1)
    remove_parallelism(model)
    for order in ("before", "after"):
        model = tiny.tiny_flux_transformer()
        if order == "before":
            model.enable_cache(FirstBlockCacheConfig(threshold=1e9))
        parallelize(model, shard_weights=True)
        if order == "after":
            model.enable_cache(FirstBlockCacheConfig(threshold=1e9))
        out[f"cache_{order}"] = cached_run(model)
        model.disable_cache()
        remove_parallelism(model)
    return out


def wan_cfg() -> list[np.ndarray]:
    model = tiny.tiny_wan_transformer()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parallelize(model, cfg_degree=2, shard_weights=True)
    if dist.get_world_size() == 2:  # cfg 2 x Ulysses 1: nothing to shard over, and it says so
        assert any("whole" in str(w.message) for w in caught)
    else:  # each CFG group holds its own copy, sharded over its 2 ranks
        assert max(shard_fraction(model)) <= 1 / 2 + 0.05
    outputs, calls = [], wan_calls()
    with torch.no_grad():
        for context, inputs in calls:
            with model.cache_context(context):
                outputs.append(model(**inputs, return_dict=False)[0])
            if len(outputs) == len(calls):
                outputs[-1].sum()  # the unguided step's output, read at once as a pipeline does
        model._reset_stateful_cache()
    return [x.as_subclass(torch.Tensor).numpy() for x in outputs]


def wan_bf16(shard: bool) -> np.ndarray:
    """Wan in bf16, its `_keep_in_fp32_modules` (norms, time embedder) float32: one FSDP2 unit of mixed dtypes."""
    model = tiny.tiny_wan_transformer(dtype=torch.bfloat16)
    parallelize(model, shard_weights=shard)
    with torch.no_grad():
        output = model(**tiny.wan_transformer_inputs(model, seed=1, **WAN), return_dict=False)[0]
    return output.float().numpy()


def t5_sharded() -> dict:
    """A pipeline's text encoder (T5, with tied embeddings), sharded by `parallelize(pipe, shard_weights=True)`."""
    encoder, ids = tiny_t5()
    pipe = tiny.tiny_flux_pipeline()
    pipe.text_encoder_2 = encoder
    parallelize(pipe, shard_weights=True)
    fractions = shard_fraction(encoder)
    with torch.no_grad():
        sharded = encoder(ids).last_hidden_state.numpy()
    remove_parallelism(pipe)
    tied = encoder.shared.weight is encoder.encoder.embed_tokens.weight
    return {"sharded": sharded, "fractions": fractions, "tied_after_remove": tied}


def compiled_blocks() -> dict:
    """`compile_repeated_blocks(fullgraph=True)` before `parallelize(..., shard_weights=True)`: FSDP2's hooks then run
    around each compiled block (Dynamo skips them). aot_eager: Dynamo and AOTAutograd as Inductor runs them, without
    minutes of code generation on 2 cores. Also how a whole-model `torch.compile(fullgraph=True)` ends."""
    inputs = tiny.wan_transformer_inputs(tiny.tiny_wan_transformer(), seed=1, **WAN)
    torch._dynamo.reset()
    model = tiny.tiny_wan_transformer()
    model.compile_repeated_blocks(fullgraph=True, backend="aot_eager")
    parallelize(model, shard_weights=True)
    with torch.no_grad():
        outputs = [model(**inputs, return_dict=False)[0].numpy() for _ in range(2)]
    model = tiny.tiny_wan_transformer()
    parallelize(model, shard_weights=True)
    try:
        with torch.no_grad():
            torch.compile(model, fullgraph=True, backend="aot_eager")(**inputs, return_dict=False)
        whole = "returned"
    except Exception as err:  # noqa: BLE001 - Dynamo wraps what it refuses
        whole = f"{type(err).__name__}: {err}"
    return {"outputs": outputs, "whole": whole}
