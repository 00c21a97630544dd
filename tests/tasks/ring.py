"""Rank tasks of the ring-attention tests: every rank builds the whole sequence from seeds, so the reference needs no
communication."""

from __future__ import annotations

import functools

import torch
import torch.distributed as dist
from torch.profiler import profile

from diffusers_usp import parallelize, remove_parallelism, tiny
from diffusers_usp.groups import Group, ParallelDims
from diffusers_usp.ring import ring_attention

from . import core as cases


@functools.cache
def mesh_groups(R: int, U: int) -> tuple[Group, Group]:
    """(ulysses, ring) groups of this rank, from the mesh `parallelize(ring_degree=R)` builds over the world (ring
    major: global chunk `r * U + u` is world rank `r * U + u`). Cached, so that repeated cases do not create new gloo
    groups."""
    dims = ParallelDims(tuple(range(dist.get_world_size())), ring=R)
    assert dims.ulysses == U
    return dims.axis("ulysses"), dims.axis("ring")


def ring_core(
    R: int, U: int, seed: int, B: int, seq_lens: tuple[int, ...], Hq: int, Hkv: int, D: int, replicated: int,
    front: bool, kv_prefix: int, mask: str | None = None, compiled: bool = False,
) -> tuple[float, dict[str, int]]:  # fmt: skip
    """(max difference between `ring_attention` and SDPA over the whole sequence, collectives of the call).

    Global chunk `c = r * U + u` (this process's world rank) holds `seq_lens[c]` sharded tokens; replicated tokens
    sit at the front or back of every rank's sequence, and a replicated K/V prefix precedes all keys.
    """
    ulysses, ring = mesh_groups(R, U)
    problem = cases.sharded_problem(seed, B, seq_lens, Hq, Hkv, D, replicated, front, kv_prefix, mask, dist.get_rank())
    q, k, v, kwargs, want = problem
    attend = functools.partial(ring_attention, ulysses=ulysses, ring=ring, **kwargs)
    if compiled:
        attend = torch.compile(attend, fullgraph=True, backend="aot_eager")
        attend(q, k, v)  # compile outside the profiled call
    with profile() as prof:
        out = attend(q, k, v)
    return (out - want).abs().max().item(), cases.gloo_events(prof)


def refused(ring_degree: int, cfg_degree: int = 1) -> str:
    try:
        parallelize(tiny.tiny_wan_transformer(), ring_degree=ring_degree, cfg_degree=cfg_degree)
    except ValueError as err:
        return str(err)
    return "no error"


def removed_and_reparallelized() -> tuple[bool, str]:
    """(whether a model parallelized with a ring computes bit for bit what it did before, once
    `remove_parallelism` ran; the error of `parallelize` with another ring degree on a model already parallelized)."""
    model = tiny.tiny_wan_transformer()
    inputs = tiny.wan_transformer_inputs(model, frames=2, height=8, width=8)
    with torch.no_grad():
        before = model(**inputs, return_dict=False)[0]
        parallelize(model, ring_degree=2)
        model(**inputs, return_dict=False)
        remove_parallelism(model)
        after = model(**inputs, return_dict=False)[0]
    parallelize(model, ring_degree=2)
    try:
        parallelize(model)
    except ValueError as err:
        return torch.equal(before, after), str(err)
    return torch.equal(before, after), "no error"
