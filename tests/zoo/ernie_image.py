"""Single-stream MMDiT coverage (plans in `diffusers_usp/plans/ernie_image.py`); Krea 2 and Bria FIBO 2 are in
`joint_stream.py`."""

import torch

from .base import Case, randn, timestep


def _unzero(model: torch.nn.Module, g: torch.Generator, std: float = 0.1) -> None:
    """Re-draw the parameters the constructor zero-initialises (adaLN-zero, zero output layers): with them at zero the
    output is zero whatever the attention does, and parity would prove nothing."""
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * std)


def _ernie_image_inputs(model, g, height=4, width=6, text=12):
    cfg = model.config
    _unzero(model, g)
    return {
        "hidden_states": randn(g, 2, cfg.in_channels, height, width),
        "timestep": timestep(g, batch=2),
        "text_bth": randn(g, 2, text, cfg.text_in_dim),
        "text_lens": torch.tensor([text, 7]),  # the second prompt is padded: its mask hides 5 text keys
    }


# 24 image + 12 text tokens: one joint stream of 36, which 2, 3 and 4 ranks divide (the split does not care where
# the image ends and the text begins).
CASES = {
    "ErnieImageTransformer2DModel": Case(
        config=dict(
            hidden_size=64,
            num_attention_heads=4,
            num_layers=2,
            ffn_hidden_size=64,
            in_channels=8,
            out_channels=8,
            patch_size=1,
            text_in_dim=24,
            rope_axes_dim=(4, 6, 6),
        ),
        inputs=_ernie_image_inputs,
    ),
}


def _ideogram4_inputs(model, g, segments=((7, 10), (5, 8))):
    """Two packed samples (text then image tokens each: 17 + 13 = 30 tokens) with per-token timesteps, so that the
    block-diagonal mask, the RoPE rows and the per-token modulation all differ across the split."""
    from diffusers.models.transformers.transformer_ideogram4 import LLM_TOKEN_INDICATOR, OUTPUT_IMAGE_INDICATOR

    cfg = model.config
    _unzero(model, g)
    seg, ind, pos = [], [], []
    for i, (text, image) in enumerate(segments):
        seg += [i] * (text + image)
        ind += [LLM_TOKEN_INDICATOR] * text + [OUTPUT_IMAGE_INDICATOR] * image
        pos += [(t, 0, 0) for t in range(text)] + [(text, h, w) for h in range(image // 2 + 1) for w in range(2)][
            :image
        ]
    S = len(seg)
    return {
        "hidden_states": randn(g, 1, S, cfg.in_channels),
        "timestep": torch.rand(1, S, generator=g),
        "encoder_hidden_states": randn(g, 1, S, cfg.llm_features_dim),
        "position_ids": torch.tensor(pos)[None],
        "segment_ids": torch.tensor(seg)[None],
        "indicator": torch.tensor(ind)[None],
    }


CASES["Ideogram4Transformer2DModel"] = Case(
    config=dict(
        in_channels=8,
        num_layers=2,
        attention_head_dim=24,
        num_attention_heads=4,
        intermediate_size=64,
        adaln_dim=16,
        llm_features_dim=32,
        mrope_section=(4, 4, 4),
    ),  # fmt: skip
    inputs=_ideogram4_inputs,
)

UNSUPPORTED: dict[str, str] = {}
