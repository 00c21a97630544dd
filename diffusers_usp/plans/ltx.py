"""LTX-Video plan: packed video tokens through sharded self-attention, text through cross-attention (`attn2`).

diffusers' own `_cp_plan` for LTX splits the text and its mask as well, which suits ring attention; here text stays
whole on every rank so that `attn2` is attended locally, with no collective.
"""

from ..compat import ContextParallelInput, ContextParallelOutput
from .base import SequencePlan, SplitOrReplicate

_TOKENS = ContextParallelInput(split_dim=1, expected_dims=3)

LTX_VIDEO = SequencePlan(
    split={
        # `hidden_states` arrives packed, [B, S, C]; the RoPE module reads only its batch size and builds the whole
        # [B, S, D] cos/sin tables from the frame/height/width (or `video_coords`), which are then split.
        "": {"hidden_states": _TOKENS},
        "rope": {
            0: ContextParallelInput(split_dim=1, expected_dims=3, split_output=True),
            1: ContextParallelInput(split_dim=1, expected_dims=3, split_output=True),
        },
        # The pipelines pass the timestep as [B], [B, 1], [B, S] (conditioning frames held at t=0) or [B, S, 1], so
        # the block modulation `temb` is [B, 1, 6 * D] (broadcast) or [B, S, 6 * D] (per token). Split it where the
        # blocks read it: a per-token one divides by P like the tokens, a broadcast one (1 row) stays whole, which is
        # exactly what `SplitOrReplicate` does. No attention is joint with it (`joint_attention=()`), so its
        # "replicated" row count is never used.
        "transformer_blocks.*": {"temb": SplitOrReplicate(split_dim=1, expected_dims=3)},
        # Gather before the output modulation: its shift/scale come from the same (possibly per-token) timestep,
        # built in `forward` for the whole sequence. `norm_out` is per token, so gathering its output is exact.
        "norm_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
    cross_attention=("transformer_blocks.*.attn2",),
    joint_attention=(),
)

PLANS = {"LTXVideoTransformer3DModel": LTX_VIDEO}
