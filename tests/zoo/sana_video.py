"""SANA video family: Sana-Video proven (linear attention, a feed-forward that convolves over each frame's grid and
across frames); the reasons the others are not supported."""

import torch

from .base import Case, randn


def _sana_video_inputs(model, g, batch=1, frames=6, height=4, width=4, text=5):
    cfg = model.config
    return {
        # 6 frames of 2 x 2 patches (patch (1, 2, 2)): 24 tokens; 6 frames over 4 ranks are 2, 2, 1, 1 (uneven)
        "hidden_states": randn(g, batch, cfg.in_channels, frames, height, width),
        "encoder_hidden_states": randn(g, batch, text, cfg.caption_channels),
        "timestep": torch.randint(0, 1000, (batch,), generator=g),
    }


# diffusers' own test layout (patch (1, 2, 2), QK norm across heads, rotary head dim split 4/4/4), one layer.
SANA_VIDEO = dict(
    in_channels=4,
    out_channels=4,
    num_attention_heads=2,
    attention_head_dim=12,
    num_layers=1,
    num_cross_attention_heads=2,
    cross_attention_head_dim=12,
    cross_attention_dim=24,
    caption_channels=8,
    mlp_ratio=2.5,
    sample_size=8,
    patch_size=(1, 2, 2),
    qk_norm="rms_norm_across_heads",
    rope_max_seq_len=32,
)
CASES = {"SanaVideoTransformer3DModel": Case(config=SANA_VIDEO, inputs=_sana_video_inputs, linear=True)}
UNSUPPORTED = {
    "SanaWMTransformer3DModel": "Gated DeltaNet linear-attention blocks, temporal short convolutions and "
    "`GLUMBConvTemp` convolutions over the token grid; its softmax blocks call SDPA from their own forward, not "
    "through an attention processor",
    "SanaWMLTX2RefinerTransformer3DModel": "its pipeline runs it with a sliding-window KV cache: self-attention "
    "prepends cached sink and history K/V (which would be per-rank shards) to the current block's keys",
}
