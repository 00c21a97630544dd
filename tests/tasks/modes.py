"""The modes of `tests/test_modes.py`: further inputs and configs of proven classes beyond their coverage case in
`tests/zoo`, and the rank tasks that run them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import zoo
from zoo.base import Case, randn, seeded, timestep

from diffusers_usp import parallelize

WORLDS = (2, 3, 4)


@dataclass(frozen=True)
class Mode:
    """A `Case` of class `cls`, and `init(model)`, run on the seeded model before use (for zero-initialized layers
    that would hide a mode)."""

    cls: str
    case: Case
    init: Callable[[torch.nn.Module], None] | None = None


def _zoo(name: str, edit: Callable[[dict], dict], **config) -> Mode:
    """Class `name`'s coverage case with `config` overrides and its inputs passed through `edit`."""
    case = zoo.CASES[name]
    return Mode(name, replace(case, config={**case.config, **config}, inputs=lambda m, g: edit(case.inputs(m, g))))


def _with_3d_ids(inputs: dict, text: int = 10) -> dict:
    """The deprecated batched `[1, S, 3]` ids, and 10 text tokens: split on 2 ranks, replicated on 3 and 4."""
    inputs["encoder_hidden_states"] = inputs["encoder_hidden_states"][:, :text]
    inputs["txt_ids"] = inputs["txt_ids"][None, :text]
    inputs["img_ids"] = inputs["img_ids"][None]
    return inputs


def _one_rope_row(inputs: dict) -> dict:
    """A `[1, D]` (cos, sin) table that broadcasts over every token, as diffusers' HunyuanDiT test passes."""
    head_dim = inputs["image_rotary_emb"][0].shape[1]
    angles = torch.linspace(0.1, 2.0, head_dim)[None]
    inputs["image_rotary_emb"] = (angles.cos(), angles.sin())
    return inputs


def _conv_inputs(model, g, height=4, width=6, text=4, **extra):
    """`Transformer2DModel`'s continuous input, `[B, C, H, W]` (24 tokens), with text when the config has
    cross-attention (diffusers' `test_spatial_transformer_*`)."""
    cfg = model.config
    inputs = {"hidden_states": randn(g, 1, cfg.in_channels, height, width), **extra}
    if cfg.cross_attention_dim is not None:
        inputs["encoder_hidden_states"] = randn(g, 1, text, cfg.cross_attention_dim)
    return inputs


def _ada_norm_inputs(model, g):
    return _conv_inputs(model, g, timestep=torch.tensor(1))  # a 0-D timestep, as diffusers' test passes


def _discrete_inputs(model, g, tokens=32):
    return {"hidden_states": torch.randint(0, model.config.num_vector_embeds, (1, tokens), generator=g)}


def _patched_inputs(model, g, size=8):
    cfg = model.config
    inputs = {"hidden_states": randn(g, 1, cfg.in_channels, size, size), "timestep": timestep(g)}  # 16 patches
    if cfg.norm_type == "ada_norm_zero":
        inputs["class_labels"] = torch.randint(0, cfg.num_embeds_ada_norm, (1,), generator=g)
    else:  # PixArt's layout: `adaln_single` and captions through cross-attention
        inputs["encoder_hidden_states"] = randn(g, 1, 6, cfg.caption_channels)
        inputs["added_cond_kwargs"] = {"resolution": None, "aspect_ratio": None}
    return inputs


def _local_cond_inputs(model, g, length=16, text=4, batch=2):
    """diffusers' Stable Audio 3 test: 16 audio steps after 3 memory tokens (19 tokens), with inpainting's local
    conditioning over the 16 audio steps."""
    cfg = model.config
    return {
        "hidden_states": randn(g, batch, cfg.io_channels, length),
        "timestep": torch.rand(batch, generator=g),
        "encoder_hidden_states": randn(g, batch, text, cfg.cond_token_dim),
        "global_hidden_states": randn(g, batch, cfg.global_cond_dim),
        "local_add_cond": randn(g, batch, cfg.local_add_cond_dim, length),
    }


def _train_local_embed(model) -> None:
    """`to_local_embed` is zero-initialized, which would make local conditioning a no-op and prove nothing."""
    for block in model.transformer_blocks:
        torch.nn.init.normal_(block.to_local_embed[-1].weight)
        torch.nn.init.normal_(block.to_local_embed[-1].bias)


_T2D = dict(norm_num_groups=4, num_layers=2)  # diffusers' configs, smaller
_CONV = dict(_T2D, in_channels=16, num_attention_heads=2, attention_head_dim=8)
_PATCHED = dict(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=2, patch_size=2,
                sample_size=8)  # fmt: skip

MODES: dict[str, Mode] = {
    # diffusers' `test_spatial_transformer_default` (and `_dropout`, the same in eval): 1x1-conv projections, one
    # head, self-attention only.
    "Transformer2DModel-conv": Mode(
        "Transformer2DModel",
        Case(config=dict(_T2D, in_channels=32, num_attention_heads=1, attention_head_dim=32), inputs=_conv_inputs),
    ),
    # `test_spatial_transformer_cross_attention_dim`: conv projections and cross-attention to text.
    "Transformer2DModel-conv-cross": Mode(
        "Transformer2DModel", Case(config=dict(_CONV, cross_attention_dim=16), inputs=_conv_inputs)
    ),
    # `test_spatial_transformer_timestep` with text: AdaLayerNorm on a class-embedded timestep.
    "Transformer2DModel-conv-ada-norm": Mode(
        "Transformer2DModel",
        Case(config=dict(_CONV, cross_attention_dim=16, num_embeds_ada_norm=5), inputs=_ada_norm_inputs),
    ),
    # `test_spatial_transformer_discrete`: VQ-Diffusion's vectorized input (32 of 16 x 16 latent pixels).
    "Transformer2DModel-discrete": Mode(
        "Transformer2DModel",
        Case(
            config=dict(num_attention_heads=1, attention_head_dim=32, num_vector_embeds=5, sample_size=16),
            inputs=_discrete_inputs,
        ),
    ),
    # Patched input, DiT's layout (`ada_norm_zero`, class labels) and PixArt's (`ada_norm_single`, captions).
    "Transformer2DModel-patched": Mode(
        "Transformer2DModel",
        Case(config=dict(_PATCHED, norm_type="ada_norm_zero", num_embeds_ada_norm=10), inputs=_patched_inputs),
    ),
    "Transformer2DModel-patched-adaln-single": Mode(
        "Transformer2DModel",
        Case(
            config=dict(_PATCHED, norm_type="ada_norm_single", cross_attention_dim=16, caption_channels=12),
            inputs=_patched_inputs,
        ),
    ),
    "FluxTransformer2DModel-3d-ids": _zoo("FluxTransformer2DModel", _with_3d_ids),
    "BriaTransformer2DModel-3d-ids": _zoo("BriaTransformer2DModel", _with_3d_ids),
    # Image-to-video by token replacement: 3 frames of 4 x 5 tokens, the first frame's 20 modulated apart; on 4
    # ranks (15 tokens each) the first frame spans ranks 0 and 1.
    "HunyuanVideoTransformer3DModel-token-replace": Mode(
        "HunyuanVideoTransformer3DModel",
        Case(
            config={**zoo.CASES["HunyuanVideoTransformer3DModel"].config, "image_condition_type": "token_replace"},
            inputs=lambda m, g: (
                zoo.CASES["HunyuanVideoTransformer3DModel"].inputs(m, g)
                | {"hidden_states": randn(g, 1, m.config.in_channels, 3, 8, 10)}
            ),
        ),
    ),
    "HunyuanDiT2DModel-broadcast-rope": _zoo("HunyuanDiT2DModel", _one_rope_row),
    # `test_spatial_transformer_timestep` as diffusers runs it: cross_attention_dim set but no text, so `attn2`
    # self-attends over the sharded image tokens; attended locally it would see only this rank's tokens.
    "Transformer2DModel-cross-without-text": Mode(
        "Transformer2DModel",
        Case(
            config=dict(_CONV, cross_attention_dim=16, num_embeds_ada_norm=5),
            inputs=lambda m, g: {k: v for k, v in _ada_norm_inputs(m, g).items() if k != "encoder_hidden_states"},
        ),
    ),
    # diffusers' tiny config (no differential attention).
    "StableAudio3DiTModel-local-cond": Mode(
        "StableAudio3DiTModel",
        Case(
            config=dict(
                io_channels=8,
                embed_dim=32,
                depth=2,
                num_heads=4,
                cond_token_dim=16,
                global_cond_dim=12,
                local_add_cond_dim=5,
                timestep_features_dim=16,
                ff_mult=2,
                num_memory_tokens=3,
                use_differential_attention=False,
            ),
            inputs=_local_cond_inputs,
        ),
        init=_train_local_embed,
    ),
}

# Modes `parallelize` refuses: (mode, words every rank's error must contain).
REFUSED: dict[str, tuple[Mode, str]] = {
    # GLIGEN's gated self-attention over image and grounding tokens: each rank would send the grounding tokens.
    "Transformer2DModel-gligen": (
        Mode(
            "Transformer2DModel",
            Case(config=dict(_CONV, cross_attention_dim=16, attention_type="gated"), inputs=_conv_inputs),
        ),
        "attention_type='gated'",
    ),
}


def build(key: str, seed: int = 0) -> tuple[torch.nn.Module, dict]:
    """The seeded tiny model of mode `key` (weights from `seed`, `init` from `seed + 2`, inputs from `seed + 1`)."""
    mode = MODES[key] if key in MODES else REFUSED[key][0]
    model = mode.case.model(mode.cls, seed)
    if mode.init is not None:
        seeded(seed + 2, lambda: mode.init(model))
    return model, mode.case.inputs(model, torch.Generator().manual_seed(seed + 1))


def mode_run(key: str) -> torch.Tensor:
    """The output of the second parallel forward (the first adds the input check; the second shows that the
    per-forward sharding state is reset)."""
    model, inputs = build(key)
    parallelize(model)
    with torch.no_grad():
        model(**inputs, return_dict=False)
        return model(**inputs, return_dict=False)[0]


def mode_refusal(key: str) -> str:
    """How this rank's `parallelize` and forward ended: the error, or "no error"."""
    return refusal(*build(key))


def refusal(model: torch.nn.Module, inputs: dict) -> str:
    """How this rank's `parallelize(model)` and its forward of `inputs` ended: the error, or "no error"."""
    try:
        parallelize(model)
        with torch.no_grad():
            model(**inputs, return_dict=False)
    except ValueError as err:
        return f"{type(err).__name__}: {err}"
    return "no error"


# The modes of the classes proven through the plan language's newer specs, kept in a module of their own.
from .plan_modes import PLAN_MODES, PLAN_REFUSED  # noqa: E402 - it imports `Mode` from this module

MODES.update(PLAN_MODES)
REFUSED.update(PLAN_REFUSED)
