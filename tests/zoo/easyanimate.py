"""EasyAnimate coverage case."""

from .base import Case, randn, timestep


def _easyanimate_inputs(model, g, frames=3, height=8, width=8, text=10):
    cfg = model.config
    return {
        "hidden_states": randn(g, 1, cfg.in_channels, frames, height, width),
        "timestep": timestep(g),
        "encoder_hidden_states": randn(g, 1, text, cfg.text_embed_dim),  # 10: split over 2 ranks, replicated over 3, 4
    }


CASES = {
    # One MMDiT block (own text projections) and one shared-projection block; 3 frames of 4x4 patches: 48 tokens.
    "EasyAnimateTransformer3DModel": Case(
        config=dict(
            num_attention_heads=2,
            attention_head_dim=16,
            in_channels=4,
            out_channels=4,
            patch_size=2,
            sample_width=8,
            sample_height=8,
            num_layers=2,
            mmdit_layers=1,
            time_embed_dim=16,
            text_embed_dim=16,
        ),
        inputs=_easyanimate_inputs,
    ),
}
UNSUPPORTED: dict[str, str] = {}
