"""Z-Image coverage, and why HiDream-I1, OmniGen and PRX have no plan."""

from .base import Case, randn, timestep


def _zimage_inputs(model, g, texts=(50, 20)):
    cfg = model.config
    # Two rows, as the pipeline batches CFG: 1 frame of 4 x 8 patches = 32 image tokens each; 50 and 20 text tokens
    # pad to 64 and 32, unified sequences of 96 and 64, the second padded to 96 with a padding mask.
    return {
        "x": [randn(g, cfg.in_channels, 1, 8, 16) for _ in texts],
        "t": timestep(g, batch=len(texts), scale=1.0),
        "cap_feats": [randn(g, n, cfg.cap_feat_dim) for n in texts],
    }


CASES: dict[str, Case] = {  # Z-Image returns one tensor per sample; the parity test stacks them
    "ZImageTransformer2DModel": Case(
        config=dict(
            all_patch_size=(2,),
            all_f_patch_size=(1,),
            in_channels=4,
            dim=32,
            n_layers=2,
            n_refiner_layers=1,
            n_heads=2,
            n_kv_heads=2,
            cap_feat_dim=16,
            axes_dims=[4, 6, 6],
            axes_lens=[128, 32, 32],
        ),
        inputs=_zimage_inputs,
    ),
}
UNSUPPORTED = {
    "HiDreamImageTransformer2DModel": "its one RoPE table spans image and text rows, built inside the forward, and "
    "the text is re-concatenated per block from per-layer Llama states: needs a plan that splits only the image "
    "rows of a tensor and joint text that stays replicated at every world size",
    "OmniGenTransformer2DModel": "the pipeline always passes a [B, 1, S, S] attention mask (causal over text, "
    "bidirectional within each image) on the joint sequence, not a key-padding mask: needs causal/general-mask USP",
    "PRXTransformer2DModel": "queries are image tokens only, keys and values are [text, image]: the text is a "
    "replicated K/V prefix of a sharded self-attention, which the core (`kv_prefix`) supports but no plan role "
    "reaches",
}
