"""The packed all-to-all and the attention core against references computed without any communication."""

import random

import pytest
import torch
from tasks import core as cases

from diffusers_usp.comm import chunk_sizes, copy_, head_split


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


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("head_dim", [128, 12, 3])
def test_wide_copy_is_bit_exact(dtype, head_dim):
    """Catches the widened packing copy changing bits (NaN payloads, signed zeros, subnormals: every pattern of
    random bits) or mis-addressing a permuted source, a sliced destination at an offset, or an expanded source;
    head_dim 3 takes the plain copy, 12 a narrower width than 128."""
    torch.manual_seed(0)
    bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[dtype.itemsize]
    src = torch.randint(-(2**15), 2**15, (2, 5, 12, head_dim)).to(bits).view(dtype)  # [B, S, P * h, D]
    permuted = src.view(2, 5, 4, 3, head_dim).permute(2, 0, 1, 3, 4)  # [P, B, S, h, D]
    dst = torch.zeros(4, 2, 5, 7, head_dim, dtype=dtype)
    copy_(dst[..., 2:5, :], permuted)
    assert torch.equal(dst[..., 2:5, :].view(bits), permuted.view(bits))
    assert not dst[..., :2, :].view(bits).any() and not dst[..., 5:, :].view(bits).any()  # nothing outside the slice
    expanded = src[0].unsqueeze(0).expand(4, 5, 12, head_dim)
    out = torch.empty(4, 5, 12, head_dim, dtype=dtype)
    assert torch.equal(copy_(out, expanded).view(bits), expanded.view(bits))


@pytest.mark.parametrize("world", [2, 3, 4])
@pytest.mark.parametrize("chunks", [2, 3])
def test_head_chunked_exchange_matches_full_attention(pools, world, chunks):
    """The schedule used under CUDA-graph capture (each rank's heads exchanged and attended in asynchronous groups)
    must reassemble every head in its place: catches a chunk's output written to another chunk's heads, or a wait
    missing before a chunk is read. Batch 2 takes the copy path, GQA the narrower K/V slots."""
    for seed, (B, hq, hkv) in enumerate([(1, 6, 6), (2, 12, 6), (1, 12, 3)]):
        hq, hkv = hq * world, hkv * world  # every rank's share divides by the chunk count (else one chunk runs)
        runs = pools(world).run(cases.pipelined_core, seed, B, 5, hq, hkv, 8, chunks)
        assert max(err for err, _ in runs) <= 1e-5, (B, hq, hkv)
        split_ok = (hq // world) % chunks == 0 and (hkv // world) % chunks == 0
        assert all(n == (2 * chunks if split_ok else 2) for _, n in runs)
