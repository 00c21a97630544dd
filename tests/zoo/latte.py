"""Latte coverage (plan in `diffusers_usp/plans/latte.py`): spatial and temporal blocks, per-sample timesteps."""

from .base import Case, randn, timestep
from .ernie_image import _unzero


def _latte_inputs(model, g, batch=2, frames=3, height=8, width=12, text=8):
    """Batch 2 with a timestep per sample (diffusers' test), 3 frames of 4 x 6 patches (24 per frame)."""
    cfg = model.config
    _unzero(model, g)
    return {
        "hidden_states": randn(g, batch, cfg.in_channels, frames, height, width),  # [B, C, F, H, W]
        "timestep": timestep(g, batch),
        "encoder_hidden_states": randn(g, batch, text, cfg.caption_channels),
        "enable_temporal_attentions": True,
    }


# diffusers' test config, one layer (a spatial and a temporal block), 3 frames.
LATTE_CONFIG = dict(sample_size=8, num_layers=1, patch_size=2, attention_head_dim=8, num_attention_heads=2,
                    caption_channels=8, in_channels=4, cross_attention_dim=16, out_channels=8, attention_bias=True,
                    activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_type="ada_norm_single",
                    norm_elementwise_affine=False, norm_eps=1e-6, video_length=3)  # fmt: skip

CASES = {"LatteTransformer3DModel": Case(config=LATTE_CONFIG, inputs=_latte_inputs)}
UNSUPPORTED: dict[str, str] = {}
