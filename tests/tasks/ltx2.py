"""LTX-2's input modes and configs, and the rank tasks of `tests/test_ltx2.py`: both of its outputs (video and audio)
under `parallelize`, or how each rank refused a mode."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from zoo.ltx2 import LTX2_OVERRIDES, ltx2_inputs

from diffusers_usp import parallelize
from diffusers_usp.comm import all_gather_dim, chunk_sizes
from diffusers_usp.groups import resolve_group
from diffusers_usp.tiny import tiny_ltx2_transformer
from diffusers_usp.two_sequences import two_sequence_attention
from tasks.modes import refusal
from tasks.ring import mesh_groups


@dataclass(frozen=True)
class Mode:
    """Config overrides of the coverage case, an edit of its inputs, and `init(model)` for zero-initialized weights
    that would hide a mode."""

    config: dict
    edit: Callable[[dict], dict] = lambda inputs: inputs
    init: Callable[[torch.nn.Module], None] | None = None


def _diffusers(inputs: dict) -> dict:
    """diffusers' own test inputs: batch 2, one timestep per sample, an all-true boolean text mask, fps 25 and 9 audio
    tokens (which 2 and 4 ranks split unevenly: 5 + 4, and 3 + 2 + 2 + 2); plus the keyframe marker of its keyframes
    test (half the video tokens marked)."""
    batch, tokens = inputs["hidden_states"].shape[:2]
    inputs["timestep"] = torch.tensor([300.0, 800.0])
    del inputs["audio_timestep"]
    inputs["encoder_attention_mask"] = torch.ones(batch, 8, dtype=torch.bool)
    inputs["audio_encoder_attention_mask"] = None
    inputs["audio_hidden_states"] = inputs["audio_hidden_states"][:, :9]
    inputs["audio_num_frames"] = 9
    marker = torch.zeros(batch, tokens, 1)
    marker[:, : tokens // 2] = 1.0
    inputs["video_keyframes_mask"] = marker
    return inputs


def _ltx23(inputs: dict) -> dict:
    """LTX-2.3's forward: sigmas for the prompt modulation, the cross-modality timestep, per-token audio timesteps,
    coordinates given by the caller, and spatio-temporal guidance on block 0 for one sample of two."""
    batch, audio = inputs["audio_hidden_states"].shape[:2]
    inputs["sigma"] = torch.tensor([0.7, 0.4])
    inputs["use_cross_timestep"] = True
    inputs["audio_timestep"] = torch.linspace(100.0, 900.0, batch * audio).view(batch, audio)
    inputs["spatio_temporal_guidance_blocks"] = [0]
    inputs["perturbation_mask"] = torch.tensor([1.0, 0.0])
    return inputs


def _all_perturbed(inputs: dict) -> dict:
    """The guidance pass of the LTX-2.3 pipelines: every sample perturbed, so the perturbed self-attentions return
    their value projections without attending."""
    inputs = _ltx23(inputs)
    inputs["perturbation_mask"] = None
    return inputs


def _keyframes(model: torch.nn.Module) -> None:
    with torch.no_grad():  # zero-initialized in diffusers: the marker would change nothing
        model.keyframes_abs_pos_embedding.copy_(torch.linspace(-0.5, 0.5, model.keyframes_abs_pos_embedding.numel()))


_LTX23_CONFIG = dict(
    rope_type="split", gated_attn=True, audio_gated_attn=True, cross_attn_mod=True, audio_cross_attn_mod=True,
    perturbed_attn=True, use_prompt_embeddings=False,
)  # fmt: skip

MODES: dict[str, Mode] = {
    "case": Mode({}),
    "diffusers": Mode({"use_keyframes_abs_pos_embedding": True}, _diffusers, _keyframes),
    "ltx23": Mode(_LTX23_CONFIG, _ltx23),
    "all_perturbed": Mode(_LTX23_CONFIG, _all_perturbed),
    "isolated": Mode({}, lambda inputs: {**inputs, "isolate_modalities": True}),
}
BATCH = {"diffusers": 2, "ltx23": 2, "all_perturbed": 2}

# Refused on every rank with a ValueError naming the mode: (mode, world sizes, words of the error).
REFUSED: dict[str, tuple[Mode, tuple[int, ...], str]] = {
    # 23 audio tokens beside 24 video ones: some rank holds as many of each (6 of both on 4 ranks), so no rank could
    # tell which sequence an attention call holds.
    "audio_23": (
        Mode({}, lambda inputs: {**inputs, "audio_hidden_states": inputs["audio_hidden_states"][:, :23]}),
        (2, 3, 4),
        "23 does not divide",
    ),
    "ic_lora_mask": (
        Mode({}, lambda inputs: {**inputs, "video_self_attention_mask": torch.ones(1, 24, 24)}),
        (2, 3, 4),
        "video_self_attention_mask",
    ),
}


def build(key: str, seed: int = 0) -> tuple[torch.nn.Module, dict]:
    """Mode `key`'s model (weights from `seed`) and inputs (from `seed + 1`)."""
    mode = MODES[key] if key in MODES else REFUSED[key][0]
    model = tiny_ltx2_transformer(seed, **{**LTX2_OVERRIDES, **mode.config})
    if mode.init is not None:
        mode.init(model)
    audio = 24 if key == "audio_23" else 12
    inputs = ltx2_inputs(model, torch.Generator().manual_seed(seed + 1), batch=BATCH.get(key, 1), audio=audio)
    return model, mode.edit(inputs)


def ltx2_run(key: str, ring_degree: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """The video and audio outputs of the second parallel forward (the first adds the input check)."""
    model, inputs = build(key)
    parallelize(model, ring_degree=ring_degree)
    with torch.no_grad():
        model(**inputs, return_dict=False)
        return model(**inputs, return_dict=False)


def ltx2_refusal(key: str) -> str:
    """How this rank's forward of a refused mode ended: the error, or "no error"."""
    return refusal(*build(key))


def two_sequence_core(ring_degree: int, Sq: int = 13, Sk: int = 7, heads: int = 4, kv_heads: int = 2) -> torch.Tensor:
    """`two_sequence_attention` on this rank's chunks of random queries (`Sq` tokens) and keys/values (`Sk` tokens,
    GQA), gathered whole for the test to compare with SDPA over the whole sequences."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, n, h, 8, generator=g) for n, h in ((Sq, heads), (Sk, kv_heads), (Sk, kv_heads)))
    group, P = resolve_group(), dist.get_world_size()
    q_lens, kv_lens = chunk_sizes(Sq, P), chunk_sizes(Sk, P)
    r = group.rank
    local = [x.narrow(1, sum(lens[:r]), lens[r]) for x, lens in ((q, q_lens), (k, kv_lens), (v, kv_lens))]
    ulysses, ring = mesh_groups(ring_degree, P // ring_degree) if ring_degree > 1 else (group, None)

    def kernel(q_, k_, v_, mask):
        out = F.scaled_dot_product_attention(*(x.transpose(1, 2) for x in (q_, k_, v_)), enable_gqa=True)
        return out.transpose(1, 2)

    out = two_sequence_attention(*local, kernel, ulysses, ring, q_lens, kv_lens)
    return all_gather_dim(out, 1, group, q_lens)
