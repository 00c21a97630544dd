"""Sana coverage case: ReLU linear self-attention, cross-attention to text, a Mix-FFN whose 3x3 depthwise conv runs
over the token grid."""

from diffusers_usp.tiny import tiny_sana_transformer

from .base import Case, randn, timestep


def _sana_inputs(model, g, batch=1, height=6, width=4, text=5):
    cfg = model.config
    return {
        # 6 x 4 latent rows and columns (patch 1): 24 tokens; 6 rows over 4 ranks are 2, 2, 1, 1 (uneven)
        "hidden_states": randn(g, batch, cfg.in_channels, height, width),
        "encoder_hidden_states": randn(g, batch, text, cfg.caption_channels),
        "timestep": timestep(g, batch),
    }


CASES = {
    "SanaTransformer2DModel": Case(config={}, tiny=tiny_sana_transformer, inputs=_sana_inputs, linear=True),
}
UNSUPPORTED: dict[str, str] = {}
