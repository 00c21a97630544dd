"""Further input modes of HunyuanVideo 1.5, LuminaNext and Mochi (the classes whose masks are built per call): the
configurations and inputs of diffusers' own tests for them, and the modes their coverage cases leave out."""

from __future__ import annotations

from dataclasses import replace

import torch
import zoo
from zoo.base import randn
from zoo.hunyuan_video15 import hunyuan_video15_inputs
from zoo.lumina_next import lumina_next_inputs
from zoo.mochi import mochi_inputs

from diffusers_usp import parallelize


def _hv15_diffusers_test(model, g):
    """diffusers' test: 1 x 8 x 8 = 64 video tokens, 6 + 4 prompt tokens and 3 image tokens (13: replicated at every
    P), nothing padded, text-to-video (zero image embeddings), a float timestep, batch 1."""
    return {
        "hidden_states": randn(g, 1, 4, 1, 8, 8),
        "timestep": torch.tensor([1.0]),
        "encoder_hidden_states": randn(g, 1, 6, 16),
        "encoder_hidden_states_2": randn(g, 1, 4, 8),
        "encoder_attention_mask": torch.ones(1, 6),
        "encoder_attention_mask_2": torch.ones(1, 4),
        "image_embeds": torch.zeros(1, 3, 12),
    }


def _lumina_next_diffusers_test(model, g):
    """diffusers' test: 16 x 16 latents (64 patches), batch 2, a random float `encoder_mask` (all true once cast to
    bool), no proportional attention (`cross_attention_kwargs={}`)."""
    inputs = lumina_next_inputs(model, g, height=16, width=16, base=None)
    inputs["encoder_mask"] = randn(g, 2, 6)
    return inputs


def _mochi_diffusers_test(model, g):
    """diffusers' test: 2 x 8 x 8 = 128 video tokens, 16 prompt tokens all valid, batch 2."""
    inputs = mochi_inputs(model, g, frames=2, height=16, width=16, text=16)
    inputs["encoder_attention_mask"][:] = True
    return inputs


def _case(name: str, inputs, **config):
    case = zoo.CASES[name]
    return name, replace(case, config={**case.config, **config}, inputs=inputs)


HV15 = "HunyuanVideo15Transformer3DModel"
# key -> (class, case)
MODES = {
    "hv15-diffusers-test": _case(
        HV15, _hv15_diffusers_test, attention_head_dim=8, num_layers=2, rope_axes_dim=(2, 2, 4)
    ),
    "hv15-image-to-video": _case(HV15, lambda m, g: hunyuan_video15_inputs(m, g, image_valid=True), task_type="i2v"),
    "lumina-next-diffusers-test": _case(
        "LuminaNextDiT2DModel", _lumina_next_diffusers_test, hidden_size=24, num_attention_heads=3, num_layers=2
    ),
    "lumina-next-no-proportional-attention": _case(
        "LuminaNextDiT2DModel", lambda m, g: lumina_next_inputs(m, g, base=None)
    ),
    # 64 patches over 3 ranks (22, 21, 21): each rank's base gives the whole sequence's scale from its own count
    "lumina-next-uneven-proportional-attention": _case(
        "LuminaNextDiT2DModel", lambda m, g: lumina_next_inputs(m, g, height=16, width=16)
    ),
    "mochi-diffusers-test": _case("MochiTransformer3DModel", _mochi_diffusers_test, attention_head_dim=8),
}


def build(key: str, seed: int = 0) -> tuple[torch.nn.Module, dict]:
    name, case = MODES[key]
    model = case.model(name, seed)
    return model, case.inputs(model, torch.Generator().manual_seed(seed + 1))


def masked_mode_run(key: str, ring_degree: int = 1) -> torch.Tensor:
    """The output of the second parallel forward (the first adds the input check)."""
    model, inputs = build(key)
    parallelize(model, ring_degree=ring_degree)
    with torch.no_grad():
        model(**inputs, return_dict=False)
        return model(**inputs, return_dict=False)[0]


def replicated_subset_overflow() -> str:
    """How a joint call whose replicated block is a subset (`ReplicatedSubset`) ends when it brings more tokens than
    this rank's sharded ones plus the whole replicated block: the error, or "no error"."""
    import torch.distributed as dist

    from diffusers_usp.attention import ShardedCall, sharded_attention
    from diffusers_usp.groups import Group

    group = Group(None, dist.get_rank(), dist.get_world_size())
    call = ShardedCall(group=group, ulysses=group, replicated=3, replicated_front=False, sharded_here=4)
    q = torch.randn(1, 4 + 5, 2, 8)  # 4 sharded tokens and 5 "replicated" ones, of at most 3
    try:
        sharded_attention(q, q, q, lambda *a: a[0], call)
    except ValueError as err:
        return str(err)
    return "no error"
