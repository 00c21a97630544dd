"""Sana and Sana-Video beyond their coverage cases: the linear processors against diffusers' own, and every input mode
of diffusers' tests and pipelines for these classes (batch 2, text padding masks, guidance, ControlNet residuals,
sin-cos positions, patch 2, per-token timesteps, uneven rows and frames), exact or refused on every rank."""

import pytest
import torch
from tasks import sana as sana_cases

from diffusers_usp.linear_attention import sana_linear_attention_2_0, sana_linear_attention_3_0


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


def test_linear_processors_equal_diffusers():
    """Catches the routed copy of a diffusers linear processor drifting from the processor itself (a diffusers
    upgrade that changes its math, eps or upcast): with no sharding, each must return what the processor returns."""
    import zoo

    from diffusers_usp.tiny import tiny_sana_transformer

    sana = tiny_sana_transformer(qk_norm="rms_norm_across_heads")
    video = zoo.CASES["SanaVideoTransformer3DModel"].model("SanaVideoTransformer3DModel")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 24, 16, generator=g)
    attn = sana.transformer_blocks[0].attn1
    with torch.no_grad():
        torch.testing.assert_close(
            sana_linear_attention_2_0(attn.processor, attn, x, token_sum=_same), attn.processor(attn, x), atol=0, rtol=0
        )
        v = torch.randn(1, 4, 6, 4, 4, generator=g)
        rope = video.rope(v)
        x = torch.randn(1, 24, 24, generator=g)
        attn = video.transformer_blocks[0].attn1
        want = attn.processor(attn, x, rotary_emb=rope)
        got = sana_linear_attention_3_0(attn.processor, attn, x, rotary_emb=rope, token_sum=_same)
        torch.testing.assert_close(got, want, atol=0, rtol=0)


MODES = [
    ("sana", "batch2_mask", 2, 1),
    ("sana", "sprint", 3, 1),
    ("sana", "pos_embed", 4, 1),
    ("sana", "controlnet", 3, 1),
    ("sana", "patch2", 4, 2),
    ("video", "batch2_mask", 2, 1),
    ("video", "i2v", 3, 1),
    ("video", "i2v", 4, 2),
]


@pytest.mark.parametrize("cls, mode, world, ring", MODES, ids=[f"{c}-{m}-{w}-ring{r}" for c, m, w, r in MODES])
def test_input_modes_are_exact(pools, cls, mode, world, ring):
    """Catches a per-token tensor the plan leaves whole or splits unlike the tokens (Sana-Video's per-token timestep
    and its output-norm rows, ControlNet residuals), positions added after the split, rows dealt out unevenly in the
    wrong order, a text padding mask applied to the wrong queries, and a halo missing at an uneven split. Linear
    attention makes one all-reduce per block and no all-to-all, ring layouts included."""
    layers = 2 if mode == "controlnet" else 1
    for err, events in pools(world).run(sana_cases.sana_mode, cls, mode, ring):
        assert err <= 1e-5, f"max abs error {err:.3g}"
        assert events.get("gloo:all_reduce", 0) == layers and "gloo:all_to_all" not in events, events


@pytest.mark.parametrize("cls, mode, world", [("sana", "too_few_rows", 3), ("video", "too_few_frames", 4)])
def test_fewer_rows_than_ranks_is_refused_on_every_rank(pools, cls, mode, world):
    """Catches a grid too short to give every rank a whole row (or frame) running anyway, where a conv's halo would
    need rows from two ranks away, or one rank raising while the others wait in a collective."""
    messages = pools(world).run(sana_cases.sana_refused, cls, mode)
    assert all("fewer than the" in m and "ranks sharing them" in m for m in messages), messages


def test_pipeline_with_cfg_parallel_and_heads_only(pools):
    """Catches the row split or the key-value all-reduce taking the wrong group when CFG parallel halves the ranks
    (cfg 2 x 2 ranks: each half must reduce over its own two ranks only), and a bare `USPProcessor()` (sequence whole
    on every rank) reducing sums that are already whole."""
    for cfg_err, heads_err in pools(4).run(sana_cases.sana_pipeline_cfg_and_heads, 2):
        assert cfg_err <= 1e-5 and heads_err <= 1e-5, (cfg_err, heads_err)
