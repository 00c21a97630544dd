"""The packed all-to-all and the attention core against references computed without any communication."""

import random

import pytest

import cases
from diffusers_usp.comm import chunk_sizes, head_split


@pytest.mark.parametrize("heads", [(8, 8), (24, 24), (6, 6), (5, 5), (8, 2), (12, 4), (6, 3), (4, 1), (3, 3), (2, 1)])
@pytest.mark.parametrize("world", [1, 2, 3, 4, 5, 8])
def test_head_split_covers_every_query_head_once(heads, world):
    """Every query head is computed by exactly one rank, and each rank receives the KV heads its queries read."""
    hq, hkv = heads
    split = head_split(hq, hkv, world)
    owned = [h for q0, q1 in split.q for h in range(q0, q1)]
    assert owned == list(range(hq))
    g = hq // hkv
    for (q0, q1), (kv0, kv1) in zip(split.q, split.kv):
        assert all(kv0 <= h // g < kv1 for h in range(q0, q1))
        assert kv1 - kv0 <= max(1, -(-(q1 - q0) // g) + 1)


def _shapes(world: int, n: int = 8):
    """Random (B, per-rank token counts, Hq, Hkv, D): GQA/MQA, head counts the world size may not divide, and every
    other case a sequence the world size does not divide (`tensor_split`'s counts)."""
    rng = random.Random(world)
    for i in range(n):
        hkv = rng.choice([1, 2, 3, 4, 8])
        total = rng.randint(world, 5 * world)
        lens = chunk_sizes(total, world) if i % 2 else (rng.randint(1, 5),) * world
        yield rng.choice([1, 2]), lens, hkv * rng.choice([1, 1, 2, 3]), hkv, rng.choice([4, 8])


@pytest.mark.parametrize("world", [2, 3, 4])
def test_packed_all_to_all_delivers_each_sources_head_slices(pools, world):
    """Catches packing bugs: heads of Q/K/V mixed up between destinations, GQA KV heads sent to the wrong rank,
    source chunks assembled out of sequence order, uneven chunks received at the wrong offsets."""
    for seed, shape in enumerate(_shapes(world)):
        errors = pools(world).run(cases.packed_all_to_all, seed, *shape)
        assert max(errors) == 0.0, shape


@pytest.mark.parametrize("world", [2, 3, 4])
def test_ulysses_attention_matches_full_attention(pools, world):
    """Replicated Q/K/V tokens (front and back) and a replicated K/V prefix must be attended exactly once (any copy
    sent through the all-to-all would be counted P times in the softmax); uneven sequences need no padding; key
    masks (boolean or additive) must follow their keys through the all-to-all."""
    rng = random.Random(100 + world)
    for seed, (B, s, hq, hkv, D) in enumerate(_shapes(world)):
        replicated, front, prefix = rng.choice([0, 3]), rng.random() < 0.5, rng.choice([0, 2])
        mask = [None, "bool", "additive"][seed % 3]
        errors = pools(world).run(cases.attention_core, seed, B, s, hq, hkv, D, replicated, front, prefix, mask)
        assert max(errors) <= 1e-5, (B, s, hq, hkv, D, replicated, front, prefix, mask)
