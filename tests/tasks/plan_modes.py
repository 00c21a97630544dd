"""Input modes of the classes proven through the plan language's newer specs (issue 21: PRX's K/V prefix, ...): the
modes of diffusers' own tests for each class (batch 2, no mask, odd token counts, released configs) beyond its
coverage case in `tests/zoo`. `tasks/modes.py` merges them into `MODES` and `REFUSED`, so `tests/test_modes.py`
runs them at every world size."""

from __future__ import annotations

from dataclasses import replace

import torch
import zoo
from zoo.ace_step import _ace_step_inputs
from zoo.anyflow import _anyflow_inputs
from zoo.cogvideo import _consisid_inputs
from zoo.latte import _latte_inputs
from zoo.prx import _prx_inputs

from .modes import Mode


def _case(name: str, inputs=None, **config) -> Mode:
    """Class `name`'s coverage case with `config` overrides and other `inputs(model, generator)`."""
    case = zoo.CASES[name]
    return Mode(name, replace(case, config={**case.config, **config}, inputs=inputs or case.inputs))


def _without(inputs: dict, *names: str) -> dict:
    return {k: v for k, v in inputs.items() if k not in names}


_BIAS = torch.tensor([[0.0] * 8, [0.0] * 5 + [-10000.0] * 3])[:, None]  # the second caption's last 3 tokens padded

PLAN_MODES: dict[str, Mode] = {
    # diffusers' PRX test: batch 2 (its `get_dummy_inputs(batch_size)`), no text mask.
    "PRXTransformer2DModel-batch2-no-mask": _case(
        "PRXTransformer2DModel", lambda m, g: _without(_prx_inputs(m, g, batch=2), "attention_mask")
    ),
    # 5 x 7 = 35 patches: no world size divides them (uneven chunks), with the text mask.
    "PRXTransformer2DModel-odd": _case("PRXTransformer2DModel", lambda m, g: _prx_inputs(m, g, height=10, width=14)),
    # PRX-7B's layout: the two-layer bottleneck `img_in` and the resolution embedding; batch 2.
    "PRXTransformer2DModel-7b": _case(
        "PRXTransformer2DModel", lambda m, g: _prx_inputs(m, g, batch=2), bottleneck_size=12, resolution_embeds=True
    ),
    # 12 text tokens: on 2 ranks the mask's length, 12 + 12 local image keys, equals the whole sequence's, 24; it must
    # still be read as a key mask over [text, own keys], not as a dense whole-sequence mask.
    "PRXTransformer2DModel-text12": _case("PRXTransformer2DModel", lambda m, g: _prx_inputs(m, g, text=12)),
    # diffusers' ConsisID test: batch 2, one frame of 4 x 4 patches (16 tokens: uneven on 3 ranks), 8 text tokens.
    "ConsisIDTransformer3DModel-batch2-one-frame": _case(
        "ConsisIDTransformer3DModel", lambda m, g: _consisid_inputs(m, g, batch=2, frames=1, height=8, width=8)
    ),
    # No face path, and the sin-cos position table added inside the patch embedding instead of rotary positions.
    "ConsisIDTransformer3DModel-no-face-sincos": _case(
        "ConsisIDTransformer3DModel",
        lambda m, g: _without(_consisid_inputs(m, g), "id_cond", "id_vit_hidden", "image_rotary_emb"),
        is_train_face=False,
        use_rotary_positional_embeddings=False,
    ),
    # diffusers' Latte test: one frame of 4 x 4 patches (16: uneven on 3 ranks), 2 layers.
    "LatteTransformer3DModel-one-frame": _case(
        "LatteTransformer3DModel", lambda m, g: _latte_inputs(m, g, frames=1, height=8, width=8), num_layers=2
    ),
    # Temporal attention off.
    "LatteTransformer3DModel-no-temporal": _case(
        "LatteTransformer3DModel", lambda m, g: _latte_inputs(m, g) | {"enable_temporal_attentions": False}
    ),
    # A padded caption's cross-attention bias (`[B, 1, T]`, 0 or -10000, the form Latte's forward passes on), per
    # sample. One frame: with more, diffusers' own forward fails on a mask (it repeats the caption per frame, not its
    # mask); LattePipeline passes none.
    "LatteTransformer3DModel-masked-text": _case(
        "LatteTransformer3DModel", lambda m, g: _latte_inputs(m, g, frames=1) | {"encoder_attention_mask": _BIAS}
    ),
    # diffusers' ACE-Step test: batch 2, 8 latent frames (4 tokens), a window of 16 (wider than the sequence).
    "AceStepTransformer1DModel-batch2-wide-window": _case(
        "AceStepTransformer1DModel", lambda m, g: _ace_step_inputs(m, g, batch=2, length=8), sliding_window=16
    ),
    # 45 latent frames: padded to 46 by the forward, 23 tokens (uneven at every world size), cut back after.
    "AceStepTransformer1DModel-odd": _case("AceStepTransformer1DModel", lambda m, g: _ace_step_inputs(m, g, length=45)),
    # diffusers' AnyFlow test: 2 frames of 8 x 8 patches (128 tokens: uneven on 3 ranks), 2 layers.
    "AnyFlowTransformer3DModel-two-frames": _case(
        "AnyFlowTransformer3DModel", lambda m, g: _anyflow_inputs(m, g, frames=2, height=16, width=16), num_layers=2
    ),
    # Batch 2, image-prompt tokens joined to the text, and the `t - r` delta timestep.
    "AnyFlowTransformer3DModel-batch2-image": _case(
        "AnyFlowTransformer3DModel",
        lambda m, g: _anyflow_inputs(m, g, batch=2, image=4),
        image_dim=8,
        deltatime_type="t-r",
    ),
}
PLAN_REFUSED: dict[str, tuple[Mode, str]] = {}
