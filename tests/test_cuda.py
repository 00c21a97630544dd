"""The CUDA path on one GPU: NCCL collectives, CUDA-graph capture (with the head-chunked schedule), compile, bf16
parity.

With one GPU the model-level path short-circuits (a group of one has nothing to exchange), so the core is driven
directly on a one-rank NCCL group: packing, the synchronous and asynchronous all-to-alls, their stream joins and the
allocator bookkeeping all run for real.
"""

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from diffusers_usp import apply_cuda_graphs, parallelize
from diffusers_usp.groups import Group
from diffusers_usp.lse import attention_lse
from diffusers_usp.tiny import flux_transformer_inputs, tiny_flux_transformer
from diffusers_usp.ulysses import CAPTURE_HEAD_CHUNKS, ulysses_attention

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def nccl():
    dist.init_process_group("nccl", store=dist.HashStore(), rank=0, world_size=1, device_id=torch.device("cuda", 0))
    yield Group(dist.group.WORLD, 0, 1)
    dist.destroy_process_group()


def _sdpa(q, k, v, mask=None):
    return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)


def _qkv(S=4608, H=24, D=128, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return [torch.randn(1, S, H, D, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(3)]


@pytest.mark.parametrize("replicated", [0, 512])
def test_nccl_all_to_all_matches_sdpa(nccl, replicated):
    """The exchange as eager steps run it: packing on the compute stream, each all-to-all on NCCL's own stream. Catches
    attention reading `recv` before NCCL's stream wrote it, or a packing buffer reused before NCCL read it. Equal bit
    for bit: at world 1 the kernel sees the same values in the same order, only copied."""
    q, k, v = _qkv()
    out = ulysses_attention(q, k, v, _sdpa, nccl, replicated=replicated)
    torch.cuda.synchronize()
    assert torch.equal(out, _sdpa(q, k, v))


def test_cuda_graph_replays_the_parallel_attention(nccl):
    """A CUDA graph captures packing, the NCCL all-to-alls (asynchronous, `CAPTURE_HEAD_CHUNKS` head chunks) and
    attention, and replays them on new inputs: the capture path has no host sync and no allocation that changes
    between calls, and every chunk's heads land in their place. Equal bit for bit to SDPA on the whole tensors: SDPA
    computes each head apart, so attending the heads in chunks changes no arithmetic."""
    assert CAPTURE_HEAD_CHUNKS > 1  # else this test would not exercise the chunked schedule
    static = _qkv(seed=1)
    fn = lambda: ulysses_attention(*static, _sdpa, nccl)  # noqa: E731
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            fn()  # warm-up outside capture, as CUDA graphs require
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    for seed in (2, 3):
        for dst, src in zip(static, _qkv(seed=seed)):
            dst.copy_(src)
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(out, _sdpa(*static))


def test_parallelized_flux_bf16_equals_stock_and_compiles(nccl):
    """At world size 1 USP must be an exact no-op on the GPU too, eager and under torch.compile(fullgraph=True)."""
    stock = tiny_flux_transformer(dtype=torch.bfloat16).cuda()
    usp = parallelize(tiny_flux_transformer(dtype=torch.bfloat16).cuda())
    inputs = flux_transformer_inputs(stock, height=16, width=16, text_len=16)
    with torch.no_grad():
        assert torch.equal(usp(**inputs, return_dict=False)[0], stock(**inputs, return_dict=False)[0])
        want = torch.compile(stock, fullgraph=True)(**inputs, return_dict=False)[0]
        got = torch.compile(usp, fullgraph=True)(**inputs, return_dict=False)[0]
    # Compiled against compiled: Inductor rounds bf16 at other points than eager, the same for both graphs.
    assert ((got.float() - want.float()).norm() / want.float().norm()).item() <= 1e-3


def test_no_cuda_memory_growth_over_1000_calls(nccl):
    """Buffers are allocated per call and returned to the caching allocator: nothing may accumulate, on either
    stream."""
    q, k, v = _qkv(S=1024, H=8, D=64)
    for _ in range(10):
        ulysses_attention(q, k, v, _sdpa, nccl, replicated=128)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    for _ in range(1000):
        ulysses_attention(q, k, v, _sdpa, nccl, replicated=128)
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == before


def test_cuda_graph_step_replays_like_eager_and_serves_cfg(nccl):
    """`apply_cuda_graphs` after `parallelize`: a new timestep and latents per call (copied into the graph's inputs),
    two calls per step as CFG makes them (the first result must survive the second replay), and a new shape gets
    its own graph."""
    eager = parallelize(tiny_flux_transformer(dtype=torch.bfloat16).cuda())
    graphed = apply_cuda_graphs(parallelize(tiny_flux_transformer(dtype=torch.bfloat16).cuda()))
    with torch.no_grad():
        for seed, (h, w) in [(0, (16, 16)), (1, (16, 16)), (2, (8, 24)), (3, (16, 16))]:
            a, b = (flux_transformer_inputs(eager, height=h, width=w, seed=seed + s) for s in (0, 100))
            ga, gb = graphed(**a, return_dict=False)[0], graphed(**b, return_dict=False)[0]
            for got, inputs in ((ga, a), (gb, b)):
                want = eager(**inputs, return_dict=False)[0]
                assert torch.equal(got, want)  # the same kernels on the same values, launched from a graph
    hook = graphed._diffusers_hook.get_hook("usp_cuda_graph")
    assert len(hook.graphs) == 2


def test_cuda_graph_inputs_follow_their_names(nccl):
    """Catches replayed inputs matched to the captured ones by position: the graph cache ignores keyword order, so a
    call with its keywords in another order would copy each tensor into another argument's buffer."""
    eager = parallelize(tiny_flux_transformer(dtype=torch.bfloat16).cuda())
    graphed = apply_cuda_graphs(parallelize(tiny_flux_transformer(dtype=torch.bfloat16).cuda()))
    with torch.no_grad():
        first = flux_transformer_inputs(eager, height=16, width=16, seed=0)
        graphed(**first, return_dict=False)
        second = flux_transformer_inputs(eager, height=16, width=16, seed=1)
        got = graphed(**dict(reversed(list(second.items()))), return_dict=False)[0]
        assert torch.equal(got, eager(**second, return_dict=False)[0])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("masked", [False, True])
def test_ring_block_kernels_match_the_float32_math_path(dtype, masked):
    """The CUDA kernels of a ring step (in half precision cuDNN's on Hopper and later, with or without a key bias,
    and flash attention before; the memory-efficient kernel in float32, or with a bias before Hopper) must return
    the same output and log-sum-exp as the float32 math path used on CPU: catches an LSE in another base or layout
    (padded rows), or a masked row that merges as nan."""
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 300, 4, 64, generator=g) for _ in range(3))
    bias = None
    if masked:
        bias = torch.zeros(2, 300).masked_fill(torch.rand(2, 300, generator=g) < 0.3, float("-inf"))
        bias[1] = float("-inf")  # batch 1 attends no key of this block
    want_out, want_lse = attention_lse(q, k, v, bias, 0.125)
    cast = lambda x: x.to("cuda", dtype)  # noqa: E731
    out, lse = attention_lse(cast(q), cast(k), cast(v), bias.cuda() if masked else None, 0.125)
    tol = 2e-2 if dtype == torch.bfloat16 else 1e-4
    assert out.dtype == dtype and lse.dtype == torch.float32  # merge_lse accumulates in float32
    assert (out.float().cpu() - want_out).abs().max().item() <= tol
    assert torch.equal(lse.cpu().isinf(), want_lse.isinf())
    finite = want_lse.isfinite()
    assert (lse.cpu()[finite] - want_lse[finite]).abs().max().item() <= tol
