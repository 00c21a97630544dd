"""CogVideoX family coverage cases."""

from diffusers.models.embeddings import get_3d_rotary_pos_embed

from .base import Case, randn, timestep


def _cogvideox_inputs(model, g, frames=3, height=8, width=8):
    cfg = model.config
    grid = (height // cfg.patch_size, width // cfg.patch_size)
    # The table the pipeline builds (`_prepare_rotary_positional_embeddings`), one `(cos, sin)` row per video token.
    rotary = get_3d_rotary_pos_embed(cfg.attention_head_dim, ((0, 0), grid), grid, frames, use_real=True)
    return {
        "hidden_states": randn(g, 1, frames, cfg.in_channels, height, width),  # [B, F, C, H, W]
        # 10 text tokens: split over 2 ranks, a replicated block over 3 and 4.
        "encoder_hidden_states": randn(g, 1, 10, cfg.text_embed_dim),
        "timestep": timestep(g),
        "image_rotary_emb": rotary,
    }


CASES = {
    # The 5B layout (rotary positions, no sin-cos table). 3 frames of 4x4 patches: 48 video tokens.
    "CogVideoXTransformer3DModel": Case(
        config=dict(
            num_attention_heads=4,
            attention_head_dim=16,
            in_channels=4,
            out_channels=4,
            time_embed_dim=16,
            text_embed_dim=16,
            num_layers=2,
            sample_width=8,
            sample_height=8,
            sample_frames=9,
            patch_size=2,
            max_text_seq_length=10,
            use_rotary_positional_embeddings=True,
        ),
        inputs=_cogvideox_inputs,
    ),
}
UNSUPPORTED = {
    "ConsisIDTransformer3DModel": "after its blocks the forward slices `cat([text, video])[:, text_len:]` with the "
    "whole text length, wrong when the text is sharded (its 226 tokens divide by 2)",
}
