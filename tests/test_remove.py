"""The processor's explicit role and `remove_parallelism`, the inverse of `parallelize`."""

import pytest
import torch
import zoo
from diffusers.models.transformers.transformer_flux import FluxAttnProcessor
from tasks import routing as rc

from diffusers_usp import USPProcessor, parallelize, remove_parallelism
from diffusers_usp.groups import Group
from diffusers_usp.role import AttentionRole
from diffusers_usp.sequence import SequenceState
from diffusers_usp.tiny import flux_transformer_inputs, tiny_flux_controlnet_pipeline, tiny_flux_transformer


def test_remove_parallelism_at_world_2_restores_the_model_bit_for_bit(pools):
    """Catches an undo that leaves a split or gather hook, a wrapped processor or the sequence state behind (the
    model would still split its tokens, or compute anything but what it computed before), and one that breaks a
    later `parallelize`. Every rank, after a parallel forward."""
    for report in pools(2).run(rc.remove_roundtrip):
        assert report["bit identical"] and report["bit identical after the second undo"]
        assert report["original processors"]
        assert report["hooks left"] == [] and not report["sequence state left"]
        assert report["parallel error"] <= 1e-5 and report["error when parallelized again"] <= 1e-5


def test_remove_parallelism_restores_a_pipeline_with_its_controlnet():
    """Catches an undo that forgets the ControlNet `parallelize` parallelized, or its hooks."""
    pipe = tiny_flux_controlnet_pipeline()
    models = (pipe.transformer, pipe.controlnet)
    originals = [dict(m.attn_processors) for m in models]
    assert remove_parallelism(parallelize(pipe)) is pipe
    for model, before in zip(models, originals):
        assert all(p is before[name] for name, p in model.attn_processors.items())
        assert rc._usp_hooks(model) == [] and not hasattr(model, "_usp_sequence")


def test_remove_parallelism_of_a_model_never_parallelized_changes_nothing():
    model = tiny_flux_transformer()
    inputs = flux_transformer_inputs(model, **rc.SHAPE)
    before, want = dict(model.attn_processors), rc._forward(model, inputs)
    assert remove_parallelism(model) is model
    assert all(p is before[name] for name, p in model.attn_processors.items())
    assert torch.equal(rc._forward(model, inputs), want)


def test_remove_parallelism_at_world_1_is_bit_identical():
    model, fresh = tiny_flux_transformer(), tiny_flux_transformer()
    inputs = flux_transformer_inputs(model, **rc.SHAPE)
    parallelize(model)
    rc._forward(model, inputs)
    remove_parallelism(model)
    assert torch.equal(rc._forward(model, inputs), rc._forward(fresh, inputs))


def _roles(model) -> dict[str, AttentionRole]:
    return {m.processor.role.path: m.processor.role for _, m in model.named_modules() if hasattr(m, "set_processor")}


def test_parallelize_gives_each_module_its_role():
    """Catches roles set wrongly: a cross-attention inside the sharded blocks must know its queries are sharded (so
    a call without text self-attends through the all-to-all), a text refiner's self-attention must not."""
    model, _ = zoo.build("HunyuanVideoTransformer3DModel")
    parallelize(model)
    roles = _roles(model)
    refiner = next(role for path, role in roles.items() if path.startswith("context_embedder."))
    assert refiner.mode == "cross" and not refiner.sharded_queries
    assert roles["transformer_blocks.0.attn"].mode == "sharded"
    assert {(r.model, id(r.sequence)) for r in roles.values()} == {(type(model).__name__, id(model._usp_sequence))}

    model, _ = zoo.build("WanTransformer3DModel")
    parallelize(model)
    roles = _roles(model)
    assert roles["blocks.0.attn2"].mode == "cross" and roles["blocks.0.attn2"].sharded_queries
    assert roles["blocks.0.attn1"].mode == "sharded" and not roles["blocks.0.attn1"].sharded_queries

    model, _ = zoo.build("TransformerTemporalModel")  # split along its batch: every attention local, none sharded
    parallelize(model)
    assert all(role.mode == "cross" and not role.sharded_queries for role in _roles(model).values())


def test_bare_processor_keeps_the_heads_role_and_its_group_argument():
    """`set_attn_processor(USPProcessor())` and `USPProcessor(processor, group=...)` work as before the roles."""
    assert USPProcessor().role == AttentionRole() and repr(USPProcessor()) == "USPProcessor(default, heads)"
    wrapped = USPProcessor(FluxAttnProcessor(), group=None)
    assert wrapped.role.mode == "heads" and repr(wrapped) == "USPProcessor(FluxAttnProcessor, heads)"
    assert USPProcessor(wrapped).processor is wrapped.processor


def test_roles_are_validated_where_they_are_made():
    state = SequenceState(Group(None, 0, 2))
    with pytest.raises(ValueError, match="one of"):
        AttentionRole(mode="local", sequence=state)  # the old name of "cross"
    with pytest.raises(ValueError, match="needs the transformer's `sequence`"):
        AttentionRole(mode="sharded")
    with pytest.raises(ValueError, match="takes no `sequence`"):
        AttentionRole(sequence=state)
    with pytest.raises(ValueError, match="describes a cross module"):
        AttentionRole(mode="sharded", sequence=state, sharded_queries=True)
    with pytest.raises(ValueError, match="wraps one module's processor"):
        USPProcessor(role=AttentionRole(mode="sharded", sequence=state))
    with pytest.raises(ValueError, match="heads role only"):
        USPProcessor(FluxAttnProcessor(), group=object(), role=AttentionRole(mode="cross", sequence=state))
