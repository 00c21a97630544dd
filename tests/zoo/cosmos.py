"""Cosmos family coverage."""

import torch

from .base import Case, randn


def _cosmos_inputs(model, g, frames=3, height=4, width=8):
    # Per-frame timesteps ([B, 1, T, 1, 1]) make the modulation per token; a padded text mask exercises masked
    # cross-attention, which is local. 24 video tokens: 2, 3 and 4 ranks split them evenly.
    cfg = model.config
    text_mask = torch.ones(1, 8, dtype=torch.bool)
    text_mask[:, 6:] = False
    return {
        "hidden_states": randn(g, 1, cfg.in_channels, frames, height, width),
        "timestep": torch.rand(1, 1, frames, 1, 1, generator=g),
        "encoder_hidden_states": randn(g, 1, 8, cfg.text_embed_dim),
        "attention_mask": text_mask,
        "fps": 24,
    }


CASES = {
    # No diffusers `AttentionMixin` on this class: `parallelize` finds its attention modules by walking the tree.
    "CosmosTransformer3DModel": Case(
        config=dict(
            in_channels=4,
            out_channels=4,
            num_attention_heads=4,
            attention_head_dim=16,
            num_layers=2,
            mlp_ratio=2.0,
            text_embed_dim=16,
            adaln_lora_dim=8,
            max_size=(8, 16, 16),
            patch_size=(1, 2, 2),
            concat_padding_mask=False,
            extra_pos_embed_type="learnable",
        ),
        inputs=_cosmos_inputs,
    ),
}
UNSUPPORTED = {
    "Cosmos3OmniTransformer": (
        "dual-pathway processor: causal attention over the understanding tokens and generation queries over "
        "[understanding | generation] keys in one module, on a packed batch-less layout: needs causal USP"
    ),
}
