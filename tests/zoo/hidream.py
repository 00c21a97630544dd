"""HiDream-I1 coverage (plan in `diffusers_usp/plans/hidream.py`): image rows sharded, the text whole at every P."""

import torch

from .base import Case, randn


def hidream_inputs(model, g, height=12, width=12, batch=2, text=8):
    """A batch of 2, square latents of 6 x 6 = 36 patches (non-square ones pad to `max_seq` under a key scale), and
    8 T5 + 8 + 8 Llama text tokens, the last 8 from each block's own Llama layer."""
    cfg = model.config
    llama = torch.randn(len(cfg.llama_layers), batch, text, cfg.caption_channels[1], generator=g)
    return {
        "hidden_states": randn(g, batch, cfg.in_channels, height, width),
        "timesteps": torch.randint(0, 1000, (batch,), generator=g),
        "encoder_hidden_states_t5": randn(g, batch, text, cfg.caption_channels[0]),
        "encoder_hidden_states_llama3": llama,
        "pooled_embeds": randn(g, batch, cfg.text_emb_dim),
    }


HIDREAM_CONFIG = dict(
    patch_size=2,
    in_channels=4,
    out_channels=4,
    num_layers=1,
    num_single_layers=1,
    attention_head_dim=8,
    num_attention_heads=4,
    caption_channels=[8, 4],
    text_emb_dim=8,
    num_routed_experts=2,
    num_activated_experts=2,
    axes_dims_rope=(4, 2, 2),
    max_resolution=(8, 12),
    llama_layers=(0, 1),
)
CASES = {"HiDreamImageTransformer2DModel": Case(config=HIDREAM_CONFIG, inputs=hidream_inputs)}
UNSUPPORTED: dict[str, str] = {}
