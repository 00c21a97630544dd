"""Rank tasks of the joint-sequence tests (`tests/test_joint.py`): block-causal masks from per-token metadata in the
core, and the input modes of the joint-sequence models beyond their coverage cases."""

from __future__ import annotations

import importlib

import torch
import torch.distributed as dist
import torch.nn.functional as F

from diffusers_usp import parallelize
from diffusers_usp.attention import ShardedCall, sharded_attention
from diffusers_usp.comm import chunk_sizes
from diffusers_usp.groups import Group
from diffusers_usp.token_mask import BlockCausalMask

from .ring import mesh_groups


def _sdpa(q, k, v, mask):  # BSHD
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
    return out.transpose(1, 2)


def dense_block_causal(mask: BlockCausalMask, batch: int) -> torch.Tensor:
    """The `[B, 1, S, S]` boolean mask `mask` stands for, built elementwise from its definition: causal tokens attend
    keys up to themselves, a block's tokens every key before the block's end; padded keys never."""
    S = mask.length
    pos = torch.arange(S)
    block = torch.full((S,), -1)
    for start, stop, b in mask.runs:
        block[start:stop] = b
    same = (block[:, None] == block[None, :]) & (block[:, None] >= 0)
    allowed = (pos[None, :] <= pos[:, None]) | same
    valid = mask.key_valid if mask.key_valid is not None else torch.ones(batch, S, dtype=torch.bool)
    return allowed[None, None] & valid[:, None, None, :]


def block_causal_core(R: int, others: int, text: int, replicated: int, front: bool):
    """(this rank's output rows, their whole-sequence positions, the reference over the whole sequence) of one
    sharded attention under a `BlockCausalMask`: text, an image block, text, a second image block, with padded keys;
    laid out as `dense.dense_core` lays out its sequence (sharded joint text, or a replicated block, front or back)."""
    P, rank = dist.get_world_size(), dist.get_rank()
    ulysses, ring = mesh_groups(R, P // R)
    g = torch.Generator().manual_seed(11)
    B, H, D, S = 2, 4, 8, text + replicated + others
    cuts = sorted({S // 5, S // 2, (2 * S) // 3})
    runs = tuple(zip([0, *cuts], [*cuts, S], [-1, 0, -1, 1]))
    valid = torch.rand(B, S, generator=g) > 0.3
    valid[:, 0] = True  # every query keeps a key
    mask = BlockCausalMask(runs, valid)
    q, k, v = (torch.randn(B, S, H, D, generator=g) for _ in range(3))
    want = _sdpa(q, k, v, dense_block_causal(mask, B))
    seq_lens = tuple(n + text // P for n in chunk_sizes(others, P))
    call = ShardedCall(
        group=Group(None, rank, P), ulysses=ulysses, ring=ring if R > 1 else None, replicated=replicated,
        replicated_front=front, text=text, seq_lens=seq_lens if len(set(seq_lens)) > 1 else None,
    )  # fmt: skip
    rep_pos, chunks = call.positions(seq_lens[rank])
    mine = torch.tensor((rep_pos + chunks[rank]) if front else (chunks[rank] + rep_pos))
    out = sharded_attention(*(t.index_select(1, mine) for t in (q, k, v)), _sdpa, call, attn_mask=mask)
    return out.numpy(), mine.numpy(), want.numpy()


def build_mode(name: str, config: dict, inputs: dict, processor: str | None = None):
    """The zoo case of `name` with `config` overrides, its inputs function called with `inputs`, and (by class name)
    another of the model's own attention processors installed (`"module.Class"`)."""
    import zoo
    from zoo.base import Case

    case = zoo.CASES[name]
    case = Case(config={**case.config, **config}, inputs=case.inputs)
    model = case.model(name)
    if processor is not None:  # "module.Class"
        module, cls = processor.rsplit(".", 1)
        model.set_attn_processor(getattr(importlib.import_module(module), cls)())
    return model, case.inputs(model, torch.Generator().manual_seed(1), **inputs)


def mode_run(name: str, config: dict, inputs: dict, ring_degree: int = 1, processor: str | None = None, extra=None):
    """One forward of a mode under `parallelize`: the output, or the error every rank raised (as text). `extra`: a
    function of the model that returns more forward arguments (a KV cache)."""
    model, kwargs = build_mode(name, config, inputs, processor)
    parallelize(model, ring_degree=ring_degree)
    if extra is not None:
        kwargs.update(extra(model))
    try:
        with torch.no_grad():
            out = model(**kwargs, return_dict=False)[0]
    except (ValueError, NotImplementedError) as error:
        return f"{type(error).__name__}: {error}"
    return out.numpy()


def qwenimage21_kv_cache(model) -> dict:
    """The prefix KV cache of Qwen-Image 2.1's pipeline, first step (`use_kv_cache=True`, its default)."""
    from diffusers.models.transformers.transformer_qwenimage21 import QwenImage21KVCache

    return {"kv_cache": QwenImage21KVCache(len(model.transformer_blocks)), "kv_cache_mode": "extract"}


def flex_block_mask_refused() -> str:
    """The error a sharded attention raises for a flex `BlockMask` (its mask_mod reads whole-sequence positions)."""
    from torch.nn.attention.flex_attention import create_block_mask

    P, rank = dist.get_world_size(), dist.get_rank()
    q = torch.randn(1, 8, 2, 4)
    block_mask = create_block_mask(lambda b, h, i, j: j <= i, None, None, 8 * P, 8 * P, device="cpu", _compile=False)
    call = ShardedCall(group=Group(None, rank, P), ulysses=Group(None, rank, P))
    try:
        sharded_attention(q, q, q, _sdpa, call, attn_mask=block_mask)
    except NotImplementedError as error:
        return str(error)
    return "no error"
