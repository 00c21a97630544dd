"""Wan-family plans: video self-attention sharded, text only through cross-attention (`attn2`)."""

from ..compat import native_plan
from .base import SequencePlan


def _wan() -> SequencePlan:
    from diffusers import WanTransformer3DModel

    # diffusers' own plan is right for Wan: split the rotary tables and the patch-embedded tokens, gather after
    # proj_out. Text reaches the video only through cross-attention, whose K/V every rank already has.
    return SequencePlan(split=native_plan(WanTransformer3DModel), cross_attention=("blocks.*.attn2",))


PLANS = {"WanTransformer3DModel": _wan}
