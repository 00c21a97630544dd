"""Sana and Sana-Video: ReLU linear self-attention, cross-attention to text, and a feed-forward that convolves over
the token grid.

- Self-attention (`attn1`) is linear: its processors are routed by class to `linear_attention.py`, one all-reduce of
  the key-value sums per call and no all-to-all. With `ring_degree > 1` the sums are reduced over the whole sequence
  group, which is exact: a ring layout changes nothing for these models.
- Cross-attention (`attn2`) is SDPA to the whole text on every rank: no collective, its padding mask as it is.
- The tokens are split in whole rows of the image, or whole frames of the video (`grid_specs.py`): the latent input
  fixes the split (`GridInput`), the first block splits the tokens, every block is passed its own rows' (frames')
  count in place of `height` (`frames`), and the gather sits on `proj_out`, before the forward unpatchifies the whole
  grid.
  - Sana's Mix-FFN (`GLUMBConv`) runs a 3x3 depthwise conv over each image's rows: `conv_depth` exchanges one row
    with each neighbour rank.
  - Sana-Video's `GLUMBTempConv` runs the same conv per frame, on whole frames here, then a kernel-3 conv across
    frames: `conv_temp` exchanges one frame with each neighbour rank. (Splitting rows within each frame instead
    would keep the temporal conv local but make every rank's tokens a strided set, which the rotary table, the
    per-token timesteps and the gather would each have to follow.)
- Sana-Video's image-to-video pipeline passes a per-token timestep (`[B, 1, F, H, W]`, the first frame at 0), which
  the forward embeds to `[B, S, C]` rows: split with the tokens where they enter the blocks and the output norm, left
  whole when they are one row for every token. Sana's ControlNet residuals split like the tokens.
"""

from __future__ import annotations

import torch

from ..compat import ContextParallelOutput
from .base import SequencePlan
from .grid_specs import GridCount, GridInput, GridTokens, GridTokensEach

_TOKENS = GridTokens(split_dim=1, expected_dims=3)
_ROPE = GridTokens(split_dim=1, expected_dims=4)  # `[1, S, 1, D]`, cos and sin
_GATHER = ContextParallelOutput(gather_dim=1, expected_dims=3)
_RESIDUALS = GridTokensEach(split_dim=1, expected_dims=3)


def _sana(model: torch.nn.Module) -> SequencePlan:
    p = model.config.patch_size
    return SequencePlan(
        split={
            "": {"hidden_states": GridInput(patch=(p, p)), "controlnet_block_samples": _RESIDUALS},
            "transformer_blocks.0": {"hidden_states": _TOKENS},
            "transformer_blocks.*": {"height": GridCount()},
            "proj_out": _GATHER,
        },
        cross_attention=("transformer_blocks.*.attn2",),
        halo_convs=("transformer_blocks.*.ff.conv_depth",),
    )


def _sana_video(model: torch.nn.Module) -> SequencePlan:
    return SequencePlan(
        split={
            "": {
                "hidden_states": GridInput(patch=tuple(model.config.patch_size)),
                "controlnet_block_samples": _RESIDUALS,
            },
            "transformer_blocks.0": {"hidden_states": _TOKENS},
            "transformer_blocks.*": {"frames": GridCount(), "timestep": _TOKENS, "rotary_emb": (_ROPE, _ROPE)},
            "norm_out": {"temb": _TOKENS},
            "proj_out": _GATHER,
        },
        cross_attention=("transformer_blocks.*.attn2",),
        halo_convs=("transformer_blocks.*.ff.conv_temp",),
    )


PLANS = {"SanaTransformer2DModel": _sana, "SanaVideoTransformer3DModel": _sana_video}
