"""`parallelize(..., shard_weights=True)`: weights sharded with FSDP2 over the ranks of one sequence, against one
process, at world sizes 2, 3 and 4 (one pool task per world size runs every case: `tasks.weights.all_cases`)."""

import numpy as np
import pytest
import torch
from diffusers import FirstBlockCacheConfig
from tasks import weights as wc

from diffusers_usp import tiny

TOL = 1e-5  # float32; the runs differ only by reassociated sums (Ulysses), never by the gathered weights


@pytest.fixture(scope="module")
def references() -> dict:
    """Single-process outputs, no process group, computed once."""
    with torch.no_grad():
        flux = tiny.tiny_flux_transformer()(**wc.flux_inputs(), return_dict=False)[0].numpy()
        wan, model = [], tiny.tiny_wan_transformer()
        for _, inputs in wc.wan_calls():
            wan.append(model(**inputs, return_dict=False)[0].numpy())
        encoder, ids = wc.tiny_t5()
        t5 = encoder(ids).last_hidden_state.numpy()
    lora = wc.cached_run(wc.lora_flux(), calls=1)
    cached = tiny.tiny_flux_transformer()
    cached.enable_cache(FirstBlockCacheConfig(threshold=1e9))
    return {"flux": flux, "wan": wan, "t5": t5, "lora": lora, "cache": wc.cached_run(cached)}


@pytest.mark.parametrize("world", [2, 3, 4])
def test_shard_weights(world, pools, references):
    """Sharded weights give the single-process output at 2, 3 and 4 ranks, and the memory they promise. Guards
    against: a block computing on its shard instead of the gathered weights (wrong output); a gather that is not
    exact (sharded output unequal bit for bit to USP alone, in float32 and in bf16 with float32 norms in the same
    unit); parameters left whole on every rank (the fraction stored), the root's kept whole after a forward; FSDP2
    failing under `inference_mode`; a gather over all ranks under CFG parallel (the guidance-off step runs on one CFG
    group: it would hang until the timeout); the pipeline's text encoder left whole, or its tied embeddings untied
    by `remove_parallelism`; `remove_parallelism` leaving DTensors, FSDP classes or changed values behind;
    `apply_cuda_graphs` not refusing on every rank; a LoRA lost by sharding; diffusers' FirstBlockCache, enabled
    before or after, failing to find FSDP2's block classes or skipping blocks whose gathers then unbalance the
    ranks."""
    results = pools(world).run(wc.all_cases)
    ref = references
    for rank, got in enumerate(results):
        where = f"world {world}, rank {rank}"
        assert np.abs(got["flux_sharded"] - ref["flux"]).max() <= TOL, where
        assert np.array_equal(got["flux_sharded"], got["flux_usp"]), where
        assert np.array_equal(got["flux_sharded_inference_mode"], got["flux_usp"]), where
        assert np.array_equal(got["flux_resharded"], got["flux_usp"]), where
        # Each unit stores at most 1/P + 5 % of its elements (FSDP2 gives ranks ceil(rows / P) rows of each tensor).
        assert max(got["flux_fractions"]) <= 1 / world + 0.05, (where, got["flux_fractions"])
        assert got["flux_fractions_after"] == got["flux_fractions"], where
        assert np.array_equal(*got["wan_bf16"]), where  # bf16 with float32 norms: the gathers are exact too
        assert max(got["t5"]["fractions"]) <= 1 / world + 0.05, (where, got["t5"]["fractions"])
        assert len(got["flux_fractions"]) == 2 + 2 + 1, "one unit per double and single block, one for the rest"
        assert "CUDA graphs" in got["graphs_error"] and "shard_weights" in got["graphs_error"], where
        assert got["removed_class"] == "FluxTransformer2DModel,FluxTransformerBlock", where
        assert got["removed_same"], where
        # Bit for bit against the whole model on the same rank (another process's threads may reassociate sums).
        assert np.array_equal(got["flux_removed"], got["flux_whole"]), where
        assert np.array_equal(got["flux_removed_unused"], got["flux_whole"]), where
        assert np.abs(got["t5"]["sharded"] - ref["t5"]).max() <= TOL, where
        assert got["t5"]["tied_after_remove"], where
        assert np.abs(got["lora"] - ref["lora"]).max() <= TOL, where
        assert np.abs(got["cache_before"] - ref["cache"]).max() <= TOL, where
        assert np.abs(got["cache_after"] - ref["cache"]).max() <= TOL, where
        if world % 2 == 0:
            assert np.abs(got["flux_ring"] - ref["flux"]).max() <= TOL, where
            assert np.array_equal(got["flux_ring"], got["flux_ring_usp"]), where
            for i, (a, b) in enumerate(zip(got["wan_cfg"], ref["wan"], strict=True)):
                assert np.abs(a - b).max() <= TOL, (where, "wan call", i)


def test_compiled_blocks_with_sharded_weights(pools):
    """Blocks compiled (`compile_repeated_blocks(fullgraph=True)`, before `parallelize`) run with FSDP2's gathers
    around them and give one process's output, on the first and the second call. Guards against a compiled block
    reading its sharded parameters (a DTensor) instead of the gathered ones, and against a whole-model
    `torch.compile(fullgraph=True)` of a sharded model failing without naming the fix."""
    with torch.no_grad():
        model = tiny.tiny_wan_transformer()
        expected = model(**tiny.wan_transformer_inputs(model, seed=1, **wc.WAN), return_dict=False)[0].numpy()
    for got in pools(2).run(wc.compiled_blocks):
        for output in got["outputs"]:
            assert np.abs(output - expected).max() <= TOL
        assert "compile_repeated_blocks" in got["whole"] and "shard_weights" in got["whole"], got["whole"]


def test_repeated_blocks_of_transformers_and_text_encoders():
    """The units `shard_weights` makes: each model's outermost lists of same-class blocks, found without a per-class
    table. Guards against a text encoder left as one unit (its whole weights gathered at once on every rank: the
    memory sharding promised to save) and against a list inside a block (T5's per-block `layer`) made its own unit."""
    from diffusers import Flux2Transformer2DModel, WanTransformer3DModel
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        UMT5Config,
        UMT5EncoderModel,
    )

    from diffusers_usp.weights import repeated_blocks

    small = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2)
    with torch.device("meta"):
        clip = CLIPTextModel(CLIPTextConfig(**small))
        umt5 = UMT5EncoderModel(UMT5Config(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4))
        qwen = Qwen2_5_VLForConditionalGeneration(
            Qwen2_5_VLConfig(
                text_config=dict(small, num_key_value_heads=2, vocab_size=64),
                vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=4, out_hidden_size=32),
            )
        )
        flux2 = Flux2Transformer2DModel.from_config(tiny.tiny_flux2_transformer().config)
        wan = WanTransformer3DModel.from_config(tiny.tiny_wan_transformer().config)
    expected = {
        clip: [clip.encoder.layers],  # transformers 5 (4.x: `clip.text_model.encoder.layers`)
        umt5: [umt5.encoder.block],
        qwen: [qwen.model.visual.blocks, qwen.model.language_model.layers],
        flux2: [flux2.transformer_blocks, flux2.single_transformer_blocks],
        wan: [wan.blocks],
    }
    for model, lists in expected.items():
        found = repeated_blocks(model)
        assert [id(x) for x in found] == [id(x) for x in lists], type(model).__name__
