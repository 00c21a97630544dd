"""LuminaNext coverage case: an expanded `[B, H, S, S]` self-attention mask and proportional attention."""

import torch

from .base import Case, randn, timestep

LUMINA_NEXT_CONFIG = dict(
    sample_size=8,
    patch_size=2,
    in_channels=4,
    hidden_size=32,
    num_layers=1,
    num_attention_heads=2,
    num_kv_heads=1,
    multiple_of=16,
    learn_sigma=False,
    qk_norm=True,
    cross_attention_dim=16,
)


def lumina_next_inputs(model, g, height=8, width=12, text=6, base=16, batch=2):
    """24 image patches (4 x 6), two samples, a prompt whose last 2 tokens are padded in the second sample, the
    pipeline's complex RoPE grid, and its proportional attention with a base (16) other than the token count (24), so
    the scale differs from `attn.scale` and from what a rank's 6, 8 or 12 tokens would give. `base=None`: off."""
    from diffusers.models.embeddings import get_2d_rotary_pos_embed_lumina

    cfg = model.config
    mask = torch.ones(batch, text, dtype=torch.long)
    mask[-1, -2:] = 0
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    return {
        "hidden_states": randn(g, batch, cfg.in_channels, height, width),
        "timestep": timestep(g, batch, scale=1.0),
        "encoder_hidden_states": randn(g, batch, text, cfg.cross_attention_dim),
        "encoder_mask": mask,
        "image_rotary_emb": get_2d_rotary_pos_embed_lumina(head_dim, 16, 16),
        "cross_attention_kwargs": {} if base is None else {"base_sequence_length": base},
    }


CASES = {"LuminaNextDiT2DModel": Case(config=LUMINA_NEXT_CONFIG, inputs=lumina_next_inputs)}
UNSUPPORTED = {}
