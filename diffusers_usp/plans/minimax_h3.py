"""Plans for MiniMax-H3: one packed sequence (text, conditioning and target video, audio) in full self-attention."""

from ..compat import native_plan
from .base import SequencePlan


def _minimax_h3() -> SequencePlan:
    from diffusers import MiniMaxH3Transformer3DModel

    # diffusers' own plan is right: the rows of the three modalities are scattered into the packed buffer with
    # sequence-wide indices, so it splits at the first block, with everything indexed per packed row (the two RoPE
    # tables, each block's AdaLN row indices, `norm_out`'s timestep indices) and gathers at both output heads, whose
    # rows `forward` then selects with sequence-wide indices. The text refiner runs on the whole text stream before
    # the packing: its self-attention has every K/V row on every rank.
    return SequencePlan(split=native_plan(MiniMaxH3Transformer3DModel), cross_attention=("token_refiner.*",))


PLANS = {"MiniMaxH3Transformer3DModel": _minimax_h3}
