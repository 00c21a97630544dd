"""Rank tasks of the parity, collective, communication, compile, coverage and failure tests (see `tasks/__init__.py`
for what every task module shares)."""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.profiler import profile
from torch.utils._python_dispatch import TorchDispatchMode

from diffusers_usp import USPProcessor, parallelize
from diffusers_usp.comm import exchange_qkv, head_split, pack_qkv, unpack_qkv
from diffusers_usp.groups import resolve_group
from diffusers_usp.tiny import (
    flux_transformer_inputs,
    tiny_flux_transformer,
    tiny_wan_transformer,
    wan_transformer_inputs,
)
from diffusers_usp.ulysses import ulysses_attention


def build(model: str, shape: dict, seed: int = 0, **config):
    """A tiny random-weight transformer and its inputs; `config` overrides the tiny config."""
    if model == "flux":
        transformer = tiny_flux_transformer(seed=seed, **config)
        return transformer, flux_transformer_inputs(transformer, seed=seed + 1, **shape)
    transformer = tiny_wan_transformer(seed=seed, **config)
    return transformer, wan_transformer_inputs(transformer, seed=seed + 1, **shape)


def reference(model: str, shape: dict, **config) -> torch.Tensor:
    transformer, inputs = build(model, shape, **config)
    with torch.no_grad():
        return transformer(**inputs, return_dict=False)[0]


def gloo_events(prof) -> dict[str, int]:
    """Collective events recorded by the profiler: one `gloo:<op>` event per collective, whichever API issued it (or,
    from a `CollectiveCounter`, its counts under the same names)."""
    if isinstance(prof, CollectiveCounter):
        return dict(prof.counts)
    counts: dict[str, int] = {}
    for event in prof.events():
        if event.name.startswith("gloo:"):
            counts[event.name] = counts.get(event.name, 0) + 1
    return counts


# The c10d dispatcher ops that torch.distributed's eager collectives call, under the names gloo gives their profiler
# events.
_GLOO_EVENT = {
    "alltoall_base_": "gloo:all_to_all",
    "alltoall_": "gloo:all_to_all",
    "_allgather_base_": "gloo:all_gather",
    "allgather_": "gloo:all_gather",
    "allgather_into_tensor_coalesced_": "gloo:all_gather",
    "allreduce_": "gloo:all_reduce",
    "broadcast_": "gloo:broadcast",
    "send": "gloo:send",
    "recv_": "gloo:recv",
}


class CollectiveCounter(TorchDispatchMode):
    """Counts the collectives a forward issues, as `gloo_events` names them, from the c10d ops torch.distributed
    dispatches. The same counts as the profiler's events (docs/models.md's columns, generated before with the
    profiler, check that), at a fraction of its cost: the profiler records every op of the forward, 10 to 100 times a
    tiny model's own time."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "c10d":
            op = str(func).split(".")[1]  # "c10d.alltoall_base_.default"
            name = _GLOO_EVENT.get(op, f"c10d:{op}")
            self.counts[name] = self.counts.get(name, 0) + 1
        return func(*args, **(kwargs or {}))


def run_model(model: str, shape: dict, mode: str = "parallelize", calls: int = 1, ring_degree: int = 1, **config):
    """Every rank runs the model under USP; returns (output, collectives of the last call, warnings)."""
    transformer, inputs = build(model, shape, **config)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if mode == "parallelize":
            parallelize(transformer, ring_degree=ring_degree)
        else:
            transformer.set_attn_processor(USPProcessor())
        with torch.no_grad():
            for _ in range(calls - 1):
                transformer(**inputs, return_dict=False)
            with CollectiveCounter() as prof:
                out = transformer(**inputs, return_dict=False)[0]
    return out, gloo_events(prof), [str(w.message) for w in caught if "USPProcessor" in str(w.message)]


def feed_forward_tokens(model: str, shape: dict) -> list[int]:
    """Token counts seen by every feed-forward layer under `parallelize`."""
    transformer, inputs = build(model, shape)
    parallelize(transformer)
    seen = []
    for name, module in transformer.named_modules():
        if name.endswith(("ff", "ff_context", "proj_mlp", "ffn")):
            module.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[1]))
    with torch.no_grad():
        transformer(**inputs, return_dict=False)
    return seen


def mismatched_inputs(model: str, shape: dict, ring_degree: int = 1) -> str:
    """Rank 1 gets different latents; every rank must raise."""
    transformer, inputs = build(model, shape)
    if dist.get_rank() == 1:
        inputs["hidden_states"] = inputs["hidden_states"] + 1e-3
    parallelize(transformer, ring_degree=ring_degree)
    try:
        with torch.no_grad():
            transformer(**inputs, return_dict=False)
    except RuntimeError as err:
        return str(err)
    return "no error"


# -- the communication layer and attention core against references computed without communication ----------------


def _rank_tensors(seed: int, rank: int, B: int, S_LOCAL: int, Hq: int, Hkv: int, D: int):
    g = torch.Generator().manual_seed(seed * 1000 + rank)
    return (
        torch.randn(B, S_LOCAL, Hq, D, generator=g),
        torch.randn(B, S_LOCAL, Hkv, D, generator=g),
        torch.randn(B, S_LOCAL, Hkv, D, generator=g),
    )


def packed_all_to_all(seed: int, B: int, seq_lens: tuple[int, ...], Hq: int, Hkv: int, D: int) -> float:
    """Max difference between the packed all-to-all and the per-source slices it must deliver; rank i holds
    `seq_lens[i]` tokens."""
    group = resolve_group()
    r = group.rank
    split = head_split(Hq, Hkv, group.size)
    q, k, v = _rank_tensors(seed, r, B, seq_lens[r], Hq, Hkv, D)
    got = unpack_qkv(exchange_qkv(pack_qkv(q, k, v, split), group, seq_lens), split, r)[:3]
    (q0, q1), (kv0, kv1) = split.q[r], split.kv[r]
    sources = [_rank_tensors(seed, i, B, n, Hq, Hkv, D) for i, n in enumerate(seq_lens)]
    want = (
        torch.cat([s[0][:, :, q0:q1] for s in sources], dim=1),
        torch.cat([s[1][:, :, kv0:kv1] for s in sources], dim=1),
        torch.cat([s[2][:, :, kv0:kv1] for s in sources], dim=1),
    )
    return max((a - b).abs().max().item() if a.numel() else 0.0 for a, b in zip(got, want))


def _sdpa(q, k, v, mask=None):
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask, enable_gqa=q.shape[2] != k.shape[2]
    )
    return out.transpose(1, 2)


def _key_masks(seed: int, B: int, lengths: list[int], kind: str) -> list[torch.Tensor]:
    """Random key-padding masks for consecutive key blocks, boolean or additive, never masking every key of a row."""
    g = torch.Generator().manual_seed(seed + 7)
    masks = [torch.rand(B, n, generator=g) < 0.7 for n in lengths]
    masks[-1][:, 0] = True
    return masks if kind == "bool" else [torch.zeros(m.shape).masked_fill(~m, float("-inf")) for m in masks]


def sharded_problem(
    seed: int, B: int, seq_lens: tuple[int, ...], Hq: int, Hkv: int, D: int, replicated: int, front: bool,
    kv_prefix: int, mask: str | None, chunk: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict, torch.Tensor]:  # fmt: skip
    """One sharded attention as chunk `chunk` of `len(seq_lens)` sees it, drawn from seeds (every rank draws the
    whole sequence, so the reference needs no communication): `(q, k, v, kwargs, want)`. Chunk i holds `seq_lens[i]`
    sharded tokens; replicated tokens sit at the front or back of every chunk's sequence and a replicated K/V prefix
    precedes all keys. `kwargs` are the core's keyword arguments (replicated block, prefix, `seq_lens`, key mask);
    `want` is SDPA over the whole sequence, at this chunk's rows."""
    g = torch.Generator().manual_seed(seed)
    q_rep, k_rep, v_rep = (torch.randn(B, replicated, h, D, generator=g) for h in (Hq, Hkv, Hkv))
    k_pre, v_pre = (torch.randn(B, kv_prefix, Hkv, D, generator=g) for _ in range(2))
    shards = [_rank_tensors(seed, i, B, n, Hq, Hkv, D) for i, n in enumerate(seq_lens)]

    def local(x_rep, x_sh):
        return torch.cat([x_rep, x_sh] if front else [x_sh, x_rep], dim=1)

    q, k, v = (local(rep, sh) for rep, sh in zip((q_rep, k_rep, v_rep), shards[chunk]))
    masks = _key_masks(seed, B, [replicated, *seq_lens], mask) if mask else None  # replicated keys, then each chunk's
    kwargs = dict(replicated=replicated, replicated_front=front, kv_prefix=(k_pre, v_pre) if kv_prefix else None,
                  seq_lens=seq_lens, key_mask=local(masks[0], masks[1 + chunk]) if mask else None)  # fmt: skip

    full = [torch.cat([q_rep, *(s[0] for s in shards)], 1)]
    full += [
        torch.cat([pre, rep, *(s[i] for s in shards)], 1) for i, pre, rep in ((1, k_pre, k_rep), (2, v_pre, v_rep))
    ]
    full_mask = None
    if mask:
        valid = torch.ones(B, kv_prefix, dtype=torch.bool) if mask == "bool" else torch.zeros(B, kv_prefix)
        full_mask = torch.cat([valid, *masks], dim=1)[:, None, None, :]
    want = _sdpa(*full, full_mask)
    start = replicated + sum(seq_lens[:chunk])
    return q, k, v, kwargs, local(want[:, :replicated], want[:, start : start + seq_lens[chunk]])


def attention_core(
    seed: int, B: int, seq_lens: tuple[int, ...], Hq: int, Hkv: int, D: int, replicated: int, front: bool,
    kv_prefix: int, mask: str | None = None,
) -> float:  # fmt: skip
    """Max difference between `ulysses_attention` and SDPA over the whole sequence, with rank i holding
    `seq_lens[i]` sharded tokens, replicated tokens (front or back of each rank's sequence) and a replicated K/V
    prefix."""
    group = resolve_group()
    problem = sharded_problem(seed, B, seq_lens, Hq, Hkv, D, replicated, front, kv_prefix, mask, group.rank)
    q, k, v, kwargs, want = problem
    out = ulysses_attention(q, k, v, _sdpa, group, **kwargs)
    return (out - want).abs().max().item()


def zoo_run(name: str, ring_degree: int = 1) -> tuple[torch.Tensor, dict[str, int], int]:
    """A coverage case under `parallelize`: the output of the second forward, that forward's collectives (the first
    adds the one-time input check), and its number of attention kernel calls over the sharded sequence (a module
    with differential attention makes two per call)."""
    import zoo

    model, inputs = zoo.build(name)
    parallelize(model, ring_degree=ring_degree)
    calls = [0]

    def count(module, args, output):  # the processor counts the kernel calls it routed in the call just made
        calls[0] += module.processor._kernel_calls

    for module in model.modules():
        role = getattr(getattr(module, "processor", None), "role", None)
        if role is not None and role.mode == "sharded":
            module.register_forward_hook(count)
    with torch.no_grad():
        model(**inputs, return_dict=False)
        calls[0] = 0
        with CollectiveCounter() as prof:
            out = model(**inputs, return_dict=False)[0]
    return (torch.stack(out) if isinstance(out, list) else out), gloo_events(prof), calls[0]


def one_rank_fails(timeout_s: float) -> tuple[str, float]:
    """Rank 1 raises between two blocks; returns how this rank's forward ended and how long it took."""
    import time
    from datetime import timedelta

    model, inputs = build("wan", dict(frames=3, height=8, width=8))
    parallelize(model, timeout=timedelta(seconds=timeout_s))

    def fail(module, args):
        raise RuntimeError("rank 1 failed")

    if dist.get_rank() == 1:
        model.blocks[1].register_forward_pre_hook(fail)
    start = time.monotonic()
    try:
        with torch.no_grad():
            model(**inputs, return_dict=False)
    except Exception as err:  # noqa: BLE001 - the point is that it raises, whatever the backend calls it
        return f"raised {type(err).__name__}: {str(err)[:200]}", time.monotonic() - start
    return "returned", time.monotonic() - start


def compiled_vs_eager(model: str, shape: dict, backend: str, ring_degree: int = 1) -> tuple[float, list[str]]:
    """Max difference between `torch.compile(fullgraph=True)` of a parallelized transformer and its eager output,
    and the warnings the compilation gave about this package's code."""
    import torch._dynamo.utils

    # Each case compiles afresh: the diffusers hook code that every model's forward runs through is one code object,
    # and the compiles of earlier cases in this long-lived rank would count against its recompile limit.
    torch._dynamo.reset()
    transformer, inputs = build(model, shape)
    parallelize(transformer, ring_degree=ring_degree)
    torch._dynamo.utils.warn_once_cache.clear()  # Dynamo warns once per process; an earlier case may have used it up
    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        eager = transformer(**inputs, return_dict=False)[0]
        compiled = torch.compile(transformer, fullgraph=True, backend=backend)
        out = compiled(**inputs, return_dict=False)[0]
    return (out - eager).abs().max().item(), [str(w.message) for w in caught if "diffusers_usp" in str(w.message)]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * __import__("os").sysconf("SC_PAGE_SIZE") / 2**20


def memory_growth(calls: int) -> float:
    """Resident memory growth (MB) over `calls` parallel forwards, after a warm-up."""
    import gc

    model, inputs = build("wan", dict(frames=3, height=8, width=10), num_attention_heads=3)  # uneven: 30 tokens
    parallelize(model)
    with torch.no_grad():
        for _ in range(50):
            model(**inputs, return_dict=False)
        gc.collect()
        before = _rss_mb()
        for _ in range(calls):
            model(**inputs, return_dict=False)
        gc.collect()
    return _rss_mb() - before


def compiled_first(model: str, shape: dict) -> float:
    """Compile before any eager call; compare with a separately built eager reference."""
    transformer, inputs = build(model, shape)
    reference_model, _ = build(model, shape)
    with torch.no_grad():
        out = torch.compile(parallelize(transformer), fullgraph=True, backend="aot_eager")(**inputs, return_dict=False)[
            0
        ]
        want = reference_model(**inputs, return_dict=False)[0]
    return (out - want).abs().max().item()


def pipelined_core(seed: int, B: int, S_LOCAL: int, Hq: int, Hkv: int, D: int, chunks: int):
    """(max difference from SDPA over the whole sequence, all-to-alls made) of the even path exchanging its heads in
    `chunks` asynchronous groups, the schedule CUDA-graph capture uses."""
    from diffusers_usp.ulysses import _ulysses_even

    group = resolve_group()
    r = group.rank
    shards = [_rank_tensors(seed, i, B, S_LOCAL, Hq, Hkv, D) for i in range(group.size)]
    with profile() as prof:
        out = _ulysses_even(*shards[r], _sdpa, group, head_split(Hq, Hkv, group.size), chunks)
    want = _sdpa(*(torch.cat([s[i] for s in shards], dim=1) for i in range(3)))
    error = (out - want[:, r * S_LOCAL : (r + 1) * S_LOCAL]).abs().max().item()
    return error, gloo_events(prof).get("gloo:all_to_all", 0)


def _threads() -> int:
    with open("/proc/self/status") as f:  # gloo's threads are native: `threading` does not see them
        return int(next(line for line in f if line.startswith("Threads:")).split()[1])


def groups_of_repeated_parallelize(cfg_degree: int, ring_degree: int) -> tuple[int, int, bool]:
    """Parallelizes 3 fresh transformers with one layout, then one with another timeout. Returns how many distinct
    sequence groups the 3 got, how many threads this process gained from the second and third, and whether the
    other timeout got a group of its own."""
    from datetime import timedelta

    groups, threads = [], []
    for timeout in (None, None, None, timedelta(seconds=77)):
        model, _ = build("wan", dict(frames=3, height=8, width=8))
        kwargs = {} if timeout is None else {"timeout": timeout}
        parallelize(model, cfg_degree=cfg_degree, ring_degree=ring_degree, **kwargs)
        groups.append(model._usp_sequence.group.group)
        threads.append(_threads())
    return len({id(g) for g in groups[:3]}), threads[2] - threads[0], groups[3] is not groups[0]


def new_group_timeout(seconds: float) -> float:
    """The timeout `compat.group_timeout` reads from a group made with `seconds`."""
    import datetime

    from diffusers_usp import compat

    group = dist.new_group(timeout=datetime.timedelta(seconds=seconds))
    return compat.group_timeout(group).total_seconds()
