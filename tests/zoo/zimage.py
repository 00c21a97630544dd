"""Z-Image and OmniGen coverage."""

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


def _omnigen_inputs(model, g, text=9, height=8, width=8):
    """9 text tokens, the time token and 16 output image tokens (26), under OmniGen's own mask: causal over the
    text and the time token, bidirectional within the image, which sees everything."""
    import torch

    cfg = model.config
    S = text + 1 + (height // cfg.patch_size) * (width // cfg.patch_size)
    mask = torch.tril(torch.ones(S, S))
    mask[text + 1 :, :] = 1
    return {
        "hidden_states": randn(g, 1, cfg.in_channels, height, width),
        "timestep": timestep(g, scale=1.0),
        "input_ids": torch.randint(1, cfg.vocab_size, (1, text), generator=g),
        "input_img_latents": [],
        "input_image_sizes": {},
        "attention_mask": mask[None],
        "position_ids": torch.arange(S)[None],
    }


CASES["OmniGenTransformer2DModel"] = Case(
    config=dict(
        hidden_size=32,
        num_attention_heads=4,
        num_key_value_heads=4,
        intermediate_size=64,
        num_layers=2,
        pad_token_id=0,
        vocab_size=100,
        in_channels=4,
        time_step_dim=8,
        rope_scaling={"long_factor": [1.0, 1.5, 2.0, 2.5], "short_factor": [1.0, 1.2, 1.4, 1.6]},
    ),  # fmt: skip
    inputs=_omnigen_inputs,
)
UNSUPPORTED = {}
