"""Single-process behaviour of the public API: exact no-op at world size 1, clear errors on bad input."""

import inspect
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from diffusers import WanTransformer3DModel
from diffusers.models.transformers.transformer_flux import FluxAttnProcessor

import diffusers_usp
from diffusers_usp import USPProcessor, parallelize
from diffusers_usp.tiny import tiny_flux_controlnet_pipeline, tiny_flux_pipeline, tiny_wan_transformer


def test_wrapper_shows_the_wrapped_processors_signature():
    """diffusers' attention modules drop keyword arguments the processor's signature does not name; a generic
    `(attn, *args, **kwargs)` would silently lose e.g. CogVideoX's rotary embedding."""
    wrapped = USPProcessor(FluxAttnProcessor())
    assert isinstance(wrapped, USPProcessor)
    assert inspect.signature(wrapped.__call__) == inspect.signature(FluxAttnProcessor().__call__)


def test_parallelize_wraps_every_attention_of_a_pipeline_and_is_idempotent():
    pipe = tiny_flux_pipeline()
    assert parallelize(parallelize(pipe)) is pipe
    processors = pipe.transformer.attn_processors.values()
    assert processors and all(isinstance(p, USPProcessor) for p in processors)
    assert all(isinstance(p.processor, FluxAttnProcessor) for p in processors)


def test_pipeline_controlnet_is_parallelized_where_a_plan_exists_and_else_runs_whole():
    """Catches a pipeline's ControlNet left out of `parallelize` (it would run every token on every rank), and a
    ControlNet without a plan refused (it is correct whole) or skipped without a word (the user would not know)."""
    pipe = parallelize(tiny_flux_controlnet_pipeline())
    assert pipe.controlnet._usp_sequence is not None
    assert all(isinstance(p, USPProcessor) for p in pipe.controlnet.attn_processors.values())

    pipe = tiny_flux_controlnet_pipeline()
    pipe.controlnet.input_hint_block = torch.nn.Identity()  # the condition would arrive as an image: no plan
    with pytest.warns(UserWarning, match="no sequence plan for FluxControlNetModel: it runs whole on every rank"):
        parallelize(pipe)
    assert pipe.transformer._usp_sequence is not None and getattr(pipe.controlnet, "_usp_sequence", None) is None


def test_launched_without_a_process_group_fails_with_the_fix(monkeypatch):
    """Under a launcher asking for 2 processes, no process group means 2 independent full runs; refuse instead."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="PartialState"):
        parallelize(tiny_wan_transformer())


def test_model_without_a_plan_is_refused_with_the_alternative():
    """Plans match exact classes: a subclass may change its forward, so it gets no plan silently."""

    class MyWan(WanTransformer3DModel):
        pass

    with pytest.raises(ValueError, match="no sequence plan for MyWan.*USPProcessor"):
        parallelize(MyWan(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4, text_dim=8,
                          freq_dim=8, ffn_dim=16, num_layers=1))  # fmt: skip


def test_processor_that_calls_no_kernel_is_refused():
    """A processor that computes attention itself (bmm, linear attention) would silently attend only local tokens."""

    class LinearAttention:
        def __call__(self, attn, hidden_states, *args, **kwargs):
            q, k, v = (
                F.relu(x) for x in (attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states))
            )
            return attn.to_out[0](q @ (k.transpose(1, 2) @ v))

    with pytest.raises(TypeError, match="cannot reach its attention kernel"):
        USPProcessor(LinearAttention())


def test_several_uneven_sequences_are_refused_with_their_sizes():
    """Per-rank lengths of one attention follow from one uneven sequence; with two of different lengths they would
    be ambiguous, so the split refuses instead of risking mismatched all-to-alls."""
    from diffusers.models._modeling_parallel import ContextParallelInput

    from diffusers_usp.groups import Group
    from diffusers_usp.plans.base import shard_tensor
    from diffusers_usp.sequence import SequenceState

    state, spec = SequenceState(Group(None, 0, 3)), ContextParallelInput(split_dim=1)
    assert shard_tensor(torch.zeros(1, 7, 4), spec, state, "hidden_states").shape[1] == 3  # tensor_split: 3, 2, 2
    with pytest.raises(ValueError, match=r"lengths \[7, 9\].*3 ranks"):
        shard_tensor(torch.zeros(1, 9, 4), spec, state, "audio_hidden_states")


def test_group_and_timeout_are_exclusive():
    from datetime import timedelta

    with pytest.raises(ValueError, match="`group` or `timeout`"):
        parallelize(tiny_wan_transformer(), group=object(), timeout=timedelta(seconds=1))


def test_every_public_name_is_in_the_api_reference():
    """Catches a name exported from `diffusers_usp` that docs/api.md has no section for."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    documented = {name for heading in headings for name in re.findall(r"`(\w+)`", heading)}
    assert set(diffusers_usp.__all__) - {"__version__"} <= documented
