"""SD3-style MMDiT coverage cases (SD3, AuraFlow).

The text lengths divide by 2 but not by 3 or 4, so world 2 runs the sharded-text path and worlds 3 and 4 the
replicated-text path (SD3: replicated block at the back; AuraFlow: at the front).
"""

from .base import Case, randn, timestep


def _sd3_inputs(model, g, height=8, width=12, text=10):
    cfg = model.config
    return {
        "hidden_states": randn(g, 1, cfg.in_channels, height, width),  # 4 x 6 = 24 patches
        "encoder_hidden_states": randn(g, 1, text, cfg.joint_attention_dim),
        "pooled_projections": randn(g, 1, cfg.pooled_projection_dim),
        "timestep": timestep(g),
        # one ControlNet residual for the 2 blocks, on the image tokens (inner dim 4 heads x 8)
        "block_controlnet_hidden_states": [randn(g, 1, (height // 2) * (width // 2), 32)],
    }


def _auraflow_inputs(model, g, height=8, width=12, text=6):
    cfg = model.config
    return {
        "hidden_states": randn(g, 1, cfg.in_channels, height, width),  # 4 x 6 = 24 patches
        "encoder_hidden_states": randn(g, 1, text, cfg.joint_attention_dim),  # + 8 register tokens = 14
        "timestep": timestep(g, scale=1.0),
    }


CASES = {
    # SD3.5 layout: a dual-attention first block (image-only `attn2`) and a `context_pre_only` last block.
    "SD3Transformer2DModel": Case(
        config=dict(
            sample_size=8,
            patch_size=2,
            in_channels=4,
            num_layers=2,
            attention_head_dim=8,
            num_attention_heads=4,
            joint_attention_dim=16,
            caption_projection_dim=32,
            pooled_projection_dim=16,
            out_channels=4,
            pos_embed_max_size=8,
            dual_attention_layers=(0,),
            qk_norm="rms_norm",
        ),
        inputs=_sd3_inputs,
    ),
    "AuraFlowTransformer2DModel": Case(
        config=dict(
            sample_size=8,
            patch_size=2,
            in_channels=4,
            num_mmdit_layers=1,
            num_single_dit_layers=1,
            attention_head_dim=8,
            num_attention_heads=4,
            joint_attention_dim=16,
            caption_projection_dim=32,
            out_channels=4,
            pos_embed_max_size=64,
        ),
        inputs=_auraflow_inputs,
    ),
}
UNSUPPORTED: dict[str, str] = {}
