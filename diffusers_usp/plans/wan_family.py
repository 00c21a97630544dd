"""Plans for Wan-derived video transformers (VACE, Animate, SkyReels-V2, ChronoEdit, Helios).

They share Wan's layout: patch-embedded video tokens through self-attention (`attn1`, sharded), text only through
cross-attention (`attn2`, K/V replicated: local, no collective), RoPE tables with one row per token. What differs is
the per-token side inputs each model adds, and those are what these plans split. Helios, whose blocks cut the
sequence at an integer position, is sharded per module instead (see `HELIOS`).
"""

from ..compat import ContextParallelInput, ContextParallelOutput, native_plan
from .base import SequencePlan

# Wan's rotary module returns (cos, sin), each [1, S, 1, D]: one row per video token, split like the tokens.
_WAN_ROPE = {
    0: ContextParallelInput(split_dim=1, expected_dims=4, split_output=True),
    1: ContextParallelInput(split_dim=1, expected_dims=4, split_output=True),
}
_TOKENS = ContextParallelInput(split_dim=1, expected_dims=3)
_GATHER = ContextParallelOutput(gather_dim=1, expected_dims=3)

WAN_VACE = SequencePlan(
    split={
        "rope": _WAN_ROPE,
        # The VACE control branch runs first, on the control tokens (zero-padded to the video length) plus, in its
        # first block, the video tokens themselves; each later hint is added to the sharded main stream, so both
        # streams are split at the same token boundaries.
        "vace_blocks.0": {"hidden_states": _TOKENS, "control_hidden_states": _TOKENS},
        # `forward` passes its own, still whole, `hidden_states` to the main stack: split it again there.
        "blocks.0": {"hidden_states": _TOKENS},
        "proj_out": _GATHER,
    },
    cross_attention=("blocks.*.attn2", "vace_blocks.*.attn2"),
)

WAN_ANIMATE = SequencePlan(
    split={
        "rope": _WAN_ROPE,
        "blocks.0": {"hidden_states": _TOKENS},
        # Each face adapter attends every video frame to that frame's face-motion tokens only: the processor folds
        # the query [B, S, H, D] into [B * T, S / T, H, D] with T taken from the motion tensor [B, T, N, C]. Splitting
        # the motion tensor by frame keeps each rank's T / P frames paired with its own S / P video tokens, which is
        # exact when P divides the latent frame count (else the split raises and names the sizes).
        "face_adapter.*": {"encoder_hidden_states": ContextParallelInput(split_dim=1, expected_dims=4)},
        "proj_out": _GATHER,
    },
    # Per-frame cross-attention to the rank's own motion frames: every K/V row it needs is local.
    cross_attention=("blocks.*.attn2", "face_adapter.*"),
)

SKYREELS_V2 = SequencePlan(
    split={
        "rope": _WAN_ROPE,
        "blocks.0": {"hidden_states": _TOKENS},
        # Diffusion forcing gives every frame its own timestep: the block modulation becomes per token,
        # [B, 6, S, D], and each block reads it from `forward`'s whole tensor, so each block splits its own copy.
        # The usual [B, 6, D] modulation has 3 dims and is left alone.
        "blocks.*": {"temb": ContextParallelInput(split_dim=2, expected_dims=4)},
        # Gather before the output modulation, not after `proj_out`: with diffusion forcing its shift/scale are per
        # token and built in `forward` from the whole sequence, so they must meet the whole sequence. `norm_out` is
        # a per-token LayerNorm, so gathering its output equals gathering its input.
        "norm_out": _GATHER,
    },
    # Asynchronous diffusion forcing (`num_frame_per_block > 1`) adds a block-causal mask to the sharded
    # self-attention, which raises; the pipelines' default of 1 frame per block passes no mask.
    cross_attention=("blocks.*.attn2",),
)


def _chronoedit() -> SequencePlan:
    from diffusers import ChronoEditTransformer3DModel

    # diffusers' own plan is right: Wan's with the 1-D timestep ChronoEdit's pipeline passes (its temporal-reasoning
    # RoPE only changes the table's values, not its one row per token).
    return SequencePlan(split=native_plan(ChronoEditTransformer3DModel), cross_attention=("blocks.*.attn2",))


# Helios concatenates [long | mid | short history | current] tokens, and its blocks split that sequence at the
# integer `original_context_length` (cross-attention and the output norm see only the current tokens). An int cannot
# be split by a hook, so the residual stream stays whole and each module shards only its own input and gathers its
# output, as diffusers' own Helios plan does: attention and feed-forward compute still divide by P. Not exact with
# `is_amplify_history=True` (off in the released configs): that processor finds the history keys to scale from its
# own input length, which is then the shard's.
HELIOS = SequencePlan(
    split={
        "blocks.*.attn1": {
            "hidden_states": _TOKENS,
            "rotary_emb": ContextParallelInput(split_dim=1, expected_dims=3),  # [B, S, 2 * D], one row per token
        },
        # The processor's last op is `to_out[1]` (dropout): gathering its output is gathering the module's output.
        "blocks.*.attn1.to_out.1": _GATHER,
        "blocks.*.attn2": {"hidden_states": _TOKENS},
        "blocks.*.attn2.to_out.1": _GATHER,
        "blocks.*.ffn": {"hidden_states": _TOKENS},
        "blocks.*.ffn.net.2": _GATHER,  # the feed-forward's output projection
    },
    cross_attention=("blocks.*.attn2",),
)

PLANS = {
    "WanVACETransformer3DModel": WAN_VACE,
    "WanAnimateTransformer3DModel": WAN_ANIMATE,
    "SkyReelsV2Transformer3DModel": SKYREELS_V2,
    "ChronoEditTransformer3DModel": _chronoedit,
    "HeliosTransformer3DModel": HELIOS,
}
