"""Cosmos (Predict 2 / 2.5, Transfer 2.5) plan: video self-attention sharded, text (and image) through
cross-attention.

Cosmos adds per-token inputs beside the video tokens, each of which every block reads from `forward`'s whole tensor,
so each block splits its own copy: the learnable absolute position embedding, the per-frame timestep embeddings
(`timestep` of shape [B, 1, T, 1, 1], expanded to one row per token) and the ControlNet residuals.
"""

from ..compat import ContextParallelInput, ContextParallelOutput
from .base import SequencePlan

_TOKENS = ContextParallelInput(split_dim=1, expected_dims=3)

COSMOS = SequencePlan(
    split={
        # cos and sin are [S, D]: one row per video token.
        "rope": {
            0: ContextParallelInput(split_dim=0, expected_dims=2, split_output=True),
            1: ContextParallelInput(split_dim=0, expected_dims=2, split_output=True),
        },
        "transformer_blocks.0": {"hidden_states": _TOKENS},
        # [B, S, C] when per token; the image / single-timestep embeddings are [B, C] and not split (2 dims).
        # ControlNet residuals come from an unparallelized `CosmosControlNetModel`, whole, one row per token.
        "transformer_blocks.*": {
            "extra_pos_emb": _TOKENS,
            "embedded_timestep": _TOKENS,
            "temb": _TOKENS,
            "controlnet_residual": _TOKENS,
        },
        "norm_out": {"embedded_timestep": _TOKENS, "temb": _TOKENS},
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
    cross_attention=("transformer_blocks.*.attn2",),
)

PLANS = {"CosmosTransformer3DModel": COSMOS}
