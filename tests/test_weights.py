"""`parallelize(..., shard_weights=True)`: weights sharded with FSDP2 over the ranks of one sequence, against one
process, at world sizes 2, 3 and 4 (one pool task per world size runs every case: `weights_cases.all_cases`)."""

import numpy as np
import pytest
import torch
import weights_cases as wc
from diffusers import FirstBlockCacheConfig

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
    against: a block computing on its shard instead of the gathered weights (wrong output), a gather that is not
    exact (sharded output unequal bit for bit to USP alone), parameters left whole on every rank (the fraction
    stored), the root's weights kept whole after forward, FSDP2 failing under `inference_mode`, a gather over all
    ranks under CFG parallel (the guidance-off step runs on one CFG group: it would hang until the timeout), the
    pipeline's text encoder left whole or its tied embeddings untied by `remove_parallelism`, `remove_parallelism`
    leaving DTensors, FSDP classes or changed values behind, `apply_cuda_graphs` not refusing on every rank, a LoRA
    lost by sharding, and diffusers' FirstBlockCache, enabled before or after, failing to find FSDP2's block classes
    or skipping blocks whose gathers then unbalance the ranks."""
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
        assert max(got["t5"]["fractions"]) <= 1 / world + 0.05, (where, got["t5"]["fractions"])
        assert len(got["flux_fractions"]) == 2 + 2 + 1, "one unit per double and single block, one for the rest"
        assert "CUDA graphs" in got["graphs_error"] and "shard_weights" in got["graphs_error"], where
        assert got["removed_class"] == "FluxTransformer2DModel,FluxTransformerBlock", where
        assert got["removed_same"], where
        assert np.array_equal(got["flux_removed"], ref["flux"]), where
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
