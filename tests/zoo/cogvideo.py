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


def _consisid_inputs(model, g, batch=1, frames=3, height=4, width=8, text=8):
    """3 frames of 2 x 4 patches (24 video tokens), 8 text tokens (2 and 4 ranks divide them, so a plan that shards
    the text would cut the video at the forward's slice), and the face inputs: an identity embedding, one ViT scale."""
    cfg = model.config
    inputs = _cogvideox_inputs(model, g, frames, height, width)
    return {
        **inputs,
        "hidden_states": randn(g, batch, frames, cfg.in_channels, height, width),
        "encoder_hidden_states": randn(g, batch, text, cfg.text_embed_dim),
        "timestep": timestep(g, batch),
        "id_cond": randn(g, batch, cfg.LFE_id_dim),
        "id_vit_hidden": [randn(g, batch, 3, cfg.LFE_vit_dim) for _ in range(cfg.LFE_num_scale)],
    }


# LFE_output_dim is the face cross-attention's key width, which the model fixes at 2/3 of its inner dim (32).
_CONSISID = dict(num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4, time_embed_dim=16,
                 text_embed_dim=16, num_layers=1, sample_width=8, sample_height=8, sample_frames=9, patch_size=2,
                 max_text_seq_length=8, use_rotary_positional_embeddings=True, is_train_face=True,
                 cross_attn_interval=1, cross_attn_dim_head=8, cross_attn_num_heads=2, LFE_id_dim=6, LFE_vit_dim=6,
                 LFE_depth=1, LFE_dim_head=8, LFE_num_heads=2, LFE_num_id_token=1, LFE_num_querie=2,
                 LFE_output_dim=21, LFE_ff_mult=1, LFE_num_scale=1)  # fmt: skip

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
    # ConsisID's layout (CogVideoX 5B I2V: rotary positions) with its face identity path on, as in diffusers' test:
    # the local facial extractor's tokens cross-attend from every video token after each block (interval 1).
    "ConsisIDTransformer3DModel": Case(config=_CONSISID, inputs=_consisid_inputs),
}
UNSUPPORTED: dict[str, str] = {}
