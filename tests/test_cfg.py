"""CFG parallel: `parallelize(..., cfg_degree=2)` runs the conditional and unconditional branches on two
groups of ranks, each running Ulysses, and must equal one process (float32, max abs err <= 1e-5) whatever order
the pipeline makes its calls in."""

import numpy as np
import pytest
import torch
from diffusers.hooks import HookRegistry, ModelHook
from tasks import cfg as cc
from tasks import core as cases

from diffusers_usp import parallelize
from diffusers_usp.cfg import HOOK as _HOOK
from diffusers_usp.cfg import keep_outermost
from diffusers_usp.groups import ParallelDims
from diffusers_usp.tiny import tiny_wan_transformer, wan_transformer_inputs

# world: what one forward on one CFG group's ranks costs in collectives. Tiny Wan: 2 blocks, 1 sharded
# self-attention each (2 all-to-alls), and the output gather when the group has 2 ranks.
WAN_CALL = {2: {}, 4: {"gloo:all_to_all": 4, "gloo:all_gather": 1}}


def _add(*counts: dict) -> dict:
    total: dict = {}
    for c in counts:
        for name, n in c.items():
            total[name] = total.get(name, 0) + n
    return total


def _assert_close(got: torch.Tensor | np.ndarray, want, what: str) -> None:
    err = float(np.abs(np.asarray(got) - np.asarray(want)).max()) if isinstance(want, np.ndarray) else None
    if err is None:
        assert got.shape == want.shape, what
        err = (got - want).abs().max().item()
    assert err <= 1e-5, f"{what}: max abs error {err:.3g}"


def test_degree_and_world_are_validated_with_the_numbers():
    """Catches a cfg_degree that does not split the ranks in two equal halves reaching the mesh (a hang or a wrong
    group), and messages that do not say which numbers disagree."""
    with pytest.raises(ValueError, match=r"cfg_degree must be 1 \(off\) or 2 .*not 3"):
        ParallelDims((0, 1, 2), cfg=3)
    with pytest.raises(ValueError, match=r"cfg_degree \(2\) must divide the world size \(3\)"):
        ParallelDims((0, 1, 2), cfg=2)
    with pytest.raises(ValueError, match=r"cfg_degree \(2\) must divide the world size \(1\)"):
        parallelize(tiny_wan_transformer(), cfg_degree=2)  # one process, no process group
    assert ParallelDims((4, 5, 6, 7), cfg=2).shape == (2, 1, 2)


def test_world_that_cfg_degree_does_not_divide_is_refused_on_every_rank(pools):
    for message in pools(3).run(cc.refused, 2):
        assert "cfg_degree (2) must divide the world size (3)" in message


def test_cfg_degree_1_adds_no_hook():
    """With cfg_degree=1 nothing changes: no CFG hook, so the same calls and collectives as before."""
    model = parallelize(tiny_wan_transformer())
    assert _HOOK not in model._diffusers_hook.hooks


def test_mesh_puts_cfg_outermost_and_gives_every_group_the_timeout(pools):
    """Catches groups built in the wrong layout (CFG peers that are not of the same Ulysses rank, Ulysses groups
    that straddle the two halves) or without the timeout that keeps a failed rank from hanging the others."""
    for rank, layout in enumerate(pools(4).run(cc.mesh_layout, 7.0)):
        assert layout["mesh"] == ([[[0, 1]], [[2, 3]]], ("cfg", "ring", "ulysses"))
        assert layout["cfg"] == ([rank % 2, rank % 2 + 2], rank // 2, 2, 7.0)
        assert layout["ulysses"] == ([rank // 2 * 2, rank // 2 * 2 + 1], rank % 2, 2, 7.0)


@pytest.mark.parametrize("world", [2, 4])
def test_sequential_calls_run_on_one_group_each_and_equal_one_process(pools, world):
    """Wan-style CFG: each step a cond call in cache_context("cond") and an uncond call (other text) in
    cache_context("uncond"). Catches a pair computed by both groups (no speed-up), outputs swapped between cond and
    uncond, a pending output left unfilled or filled from the wrong peer, and any extra collective: after the first
    step (computed on both groups while the output structure is learned), each rank computes one call per step and
    adds one all-gather across the CFG axis."""
    calls = cc.wan_calls(3)
    want = cc.wan_reference(calls)
    for rank, result in enumerate(pools(world).run(cc.sequential, calls)):
        for i, (got, ref) in enumerate(zip(result["outputs"], want)):
            _assert_close(got, ref, f"rank {rank}, call {i}")
        group = rank // (world // 2)
        assert result["computed"] == [True, True] + [group == 0, group == 1] * 2
        assert result["pending"] == [False, False, True, False, True, False]
        per_step = _add(WAN_CALL[world], {"gloo:all_gather": 1})
        assert result["events"] == _add(per_step, per_step)
        assert result["warnings"] == []


def _steps(*contexts, seed=20):
    """Calls of the given cache contexts, each on its own latents and text."""
    calls = []
    for i, context in enumerate(contexts):
        inputs = cc.wan_calls(1, seed=seed + i)[context == "uncond"][1]
        calls.append((context, inputs))
    return calls


UNPAIRED = {
    # guidance off: a cond call per step, its output read before the next call; after the first broadcast the rest
    # of the pipeline call computes every call on both groups
    "guidance off": (_steps("cond", "cond", "cond"), (0, 1, 2), 1),
    # a cond call whose output nobody reads before the next cond call: settled there
    "cond after cond": (_steps("cond", "uncond", "cond", "cond", "uncond"), (), 1),
    # a call outside the cache contexts (batch 1: a second warning) between the two calls of a pair
    "other context between": (_steps("cond", "uncond", "cond", None, "uncond"), (), 2),
    # an uncond call with no cond call before it, then pairs
    "uncond first": (_steps("uncond", "cond", "uncond", "cond", "uncond"), (), 0),
    # the uncond call on other latents and timestep than its cond call: each group computes its own call from its
    # own inputs, so the pair stays exact without comparing them
    "pair on different latents": (_steps("cond", "uncond", "cond", "uncond"), (), 0),
    # a cond call with nothing after it: settled when diffusers resets the hooks at the end of the pipeline call
    "cond last": (_steps("cond", "uncond", "cond"), (), 0),
}
# the output of a pending first call fed to the next call as its latents: settled before that call
UNPAIRED["pending output as input"] = (
    [*_steps("cond", "uncond", "cond"), ("uncond", dict(_steps("uncond")[0][1], hidden_states=2))],
    (),
    1,
)


@pytest.mark.parametrize("case", list(UNPAIRED))
def test_unpaired_and_unexpected_sequences_stay_exact_on_every_rank(pools, case):
    """Catches a placeholder returned unfilled, a collective that only some ranks reach (a hang, here bounded by the
    pool's timeout), and a broadcast from the wrong group, whatever order the calls come in. Each case ends with
    every output equal to the same call made alone in one process, on every rank."""
    calls, use, warnings = UNPAIRED[case]
    want = cc.wan_reference(calls)
    for rank, result in enumerate(pools(2).run(cc.sequential, calls, use)):
        for i, (got, ref) in enumerate(zip(result["outputs"], want)):
            _assert_close(got, ref, f"{case}: rank {rank}, call {i}")
        assert len(result["warnings"]) == warnings, result["warnings"]


BATCHED = {
    # 2 text tokens and batch 2: Flux's `txt_ids` [2, 3] has dim 0 equal to the batch but counts tokens, so the split
    # must leave it whole (its plan splits it along dim -2, dim 0 of a 2-D table)
    "flux-batch2-text2": ("flux", dict(height=4, width=6, text_len=2, batch=2)),
    "wan-batch2": ("wan", dict(frames=2, height=8, width=8, batch=2)),
}
# world: collectives of one batched call: the group's Ulysses forward on its half, then one CFG all-gather
BATCHED_CALL = {
    ("flux-batch2-text2", 2): {"gloo:all_gather": 1},
    ("flux-batch2-text2", 4): {"gloo:all_to_all": 8, "gloo:all_gather": 2},  # 4 joint attentions
    ("wan-batch2", 2): {"gloo:all_gather": 1},
    ("wan-batch2", 4): {"gloo:all_to_all": 4, "gloo:all_gather": 2},
}


@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("case", list(BATCHED))
def test_batched_cfg_splits_the_batch_across_groups(pools, case, world):
    """SD3-style CFG: one call on cat([uncond, cond]). Catches a per-sample input left whole or a batch-less one
    split (a mismatched sample, or a shape error), halves gathered in the wrong order, and extra collectives."""
    model, shape = BATCHED[case]
    want = cases.reference(model, shape)
    for rank, (out, events, warned) in enumerate(pools(world).run(cc.batched, model, shape)):
        _assert_close(out, want, f"rank {rank}")
        assert events == BATCHED_CALL[case, world] and warned == []


def test_odd_batch_runs_whole_on_both_groups_and_warns_once(pools):
    """Guidance off in a batched pipeline: batch 1 cannot be shared, so both groups compute it (exact, no CFG
    collective), with one warning however many calls."""
    want = cases.reference("wan", cc.WAN)
    for rank, (out, events, warned) in enumerate(pools(2).run(cc.batched, "wan", cc.WAN, calls=3)):
        _assert_close(out, want, f"rank {rank}")
        assert events == {} and len(warned) == 1 and "batch 1" in warned[0]


def test_ranks_of_the_two_groups_given_different_inputs_raise_on_every_rank(pools):
    """At world 2 each Ulysses group is one rank, so only the CFG check can see that the groups were fed different
    latents."""
    for message in pools(2).run(cc.mismatched_across_groups):
        assert "different transformer inputs" in message


def test_compile_whole_transformer_fullgraph_refuses_on_every_rank(pools):
    """The hook's run-time pairing cannot be traced: fullgraph must refuse with the alternatives, not trace a
    pairing frozen at the first call."""
    for outcome in pools(2).run(cc.compiled_whole):
        assert "compile_repeated_blocks" in outcome and "cfg_degree=2" in outcome


def test_compile_whole_transformer_with_graph_breaks_is_exact(pools):
    """Without fullgraph, the model compiles around the hook (which Dynamo skips): still paired, still exact."""
    calls = cc.wan_calls(2)
    want = cc.wan_reference(calls)
    for rank, outputs in enumerate(pools(2).run(cc.compiled_whole_graph_breaks, calls)):
        for i, (got, ref) in enumerate(zip(outputs, want)):
            _assert_close(got, ref, f"rank {rank}, call {i}")


class _Records(ModelHook):
    """A hook that appends its name to `seen` when the forward it wraps starts: the outer hook's name comes first."""

    def __init__(self, name: str, seen: list[str]):
        super().__init__()
        self.name, self.seen = name, seen

    def pre_forward(self, module, *args, **kwargs):
        self.seen.append(self.name)
        return args, kwargs


def test_cuda_graph_hook_is_kept_inside_the_cfg_hook():
    """`apply_cuda_graphs` registers its hook last, which would put it outside the CFG hook and capture the run-time
    pairing; each group must capture only the calls it computes. Checked by the order in which a forward enters the
    two hooks (registered under their names), not by the registry's private order."""
    model = tiny_wan_transformer()
    seen: list[str] = []
    registry = HookRegistry.check_if_exists_or_initialize(model)
    registry.register_hook(_Records("cfg", seen), _HOOK)
    registry.register_hook(_Records("cuda graph", seen), "usp_cuda_graph")
    keep_outermost(model)
    with torch.no_grad():
        model(**wan_transformer_inputs(model, frames=1, height=4, width=4), return_dict=False)
    assert seen == ["cfg", "cuda graph"]


def test_remove_parallelism_removes_the_cfg_hook(pools):
    for hooks, identical in pools(2).run(cc.removed):
        assert hooks == [] and identical


def test_parallelizing_again_with_another_degree_is_refused(pools):
    """Catches a second `parallelize` silently keeping the first one's cfg_degree."""
    for message in pools(2).run(cc.reparallelized):
        assert "already parallelized with cfg_degree=2" in message and "remove_parallelism" in message


@pytest.mark.parametrize("world", [2, 4])
def test_pipelines_equal_one_process(pools, world):
    """SD3 and CogVideoX (batched CFG) and Wan and Qwen-Image (two calls per step), 2 steps, guided then unguided,
    against the same pipelines in one process. Catches what the transformer-level tests cannot: the pipelines' own
    inputs (masks, rotary tables, Qwen-Image's two text lengths), their guidance arithmetic reading a pending output,
    diffusers' cache contexts and end-of-call reset, and the collectives of whole steps."""
    names = list(cc.PIPELINES)
    results = pools(world).run(cc.pipelines, names)
    ulysses = world // 2
    for name in names:
        want = [cc.run_pipeline(name, guided) for guided in (True, False)]
        for rank, per_call in enumerate(r[name] for r in results):
            (guided, guided_events, guided_warnings), (unguided, _, unguided_warnings) = per_call
            _assert_close(guided, want[0], f"{name} guided, rank {rank}")
            _assert_close(unguided, want[1], f"{name} unguided, rank {rank}")
            assert np.abs(want[0] - want[0].mean()).max() > 0.05, f"{name}: a constant output would prove nothing"
            assert guided_warnings == [] and len(unguided_warnings) == 1
            # One CFG all-gather per paired step (a sequential pipeline's first step runs on both groups instead), one
            # Ulysses gather per call this rank computes, and one input check per axis that has more than one rank.
            batched = name in ("sd3", "cogvideox")
            paired, computed = (cc.STEPS, cc.STEPS) if batched else (cc.STEPS - 1, cc.STEPS + 1)
            assert guided_events.get("gloo:all_gather", 0) == paired + computed * (ulysses > 1)
            assert guided_events.get("gloo:all_reduce", 0) == 1 + (ulysses > 1)


def test_disjoint_given_groups_each_split_into_their_own_cfg_groups(pools):
    """`group=` on disjoint sets of ranks (each generating its own images): the groups made inside one must be made
    by its ranks alone (a group creation that waited for the other set's ranks would hang, and one named alike in
    both sets would mix their connections), with the given group's timeout."""
    calls = cc.wan_calls(2)
    want = cc.wan_reference(calls)
    for rank, result in enumerate(pools(4).run(cc.within_given_groups, calls)):
        assert result["cfg ranks"] == [rank // 2 * 2, rank // 2 * 2 + 1] and result["timeout"] == 9.0
        for i, (got, ref) in enumerate(zip(result["outputs"], want)):
            _assert_close(got, ref, f"rank {rank}, call {i}")
