"""HunyuanVideo 1.5 coverage case: a per-query padding mask over `[video, text]` built from each rank's own tokens."""

import torch

from diffusers_usp.tiny import tiny_hunyuan_video15_transformer

from .base import Case, randn, timestep

# The tiny pipeline's transformer (`diffusers_usp.tiny`), fed 4 latent channels instead of the pipeline's 9.
HUNYUAN_VIDEO15_OVERRIDES = dict(in_channels=4)


def hunyuan_video15_inputs(model, g, frames=1, height=4, width=6, image=2, image_valid=False, batch=2):
    """24 video tokens and 10 joint text tokens (2 image, 3 ByT5, 5 prompt): the text is sharded on 2 ranks and a
    replicated block on 3 and 4. Two samples with different padding, so the forward's per-sample reordering of valid
    text and the padded queries' rows (0 in SDPA) differ between them. Text-to-video (`image_valid=False`, the image
    tokens zeros, all masked) as the pipeline runs it; image-to-video with `image_valid`."""
    cfg = model.config
    mask = torch.ones(batch, 5, dtype=torch.long)
    mask[0, 3:] = 0
    mask_2 = torch.ones(batch, 3, dtype=torch.long)
    mask_2[-1, 1:] = 0
    image_embeds = (
        randn(g, batch, image, cfg.image_embed_dim) if image_valid else torch.zeros(batch, image, cfg.image_embed_dim)
    )
    return {
        "hidden_states": randn(g, batch, cfg.in_channels, frames, height, width),
        "timestep": timestep(g, batch),
        "encoder_hidden_states": randn(g, batch, 5, cfg.text_embed_dim),
        "encoder_attention_mask": mask,
        "encoder_hidden_states_2": randn(g, batch, 3, cfg.text_embed_2_dim),
        "encoder_attention_mask_2": mask_2,
        "image_embeds": image_embeds,
    }


CASES = {
    "HunyuanVideo15Transformer3DModel": Case(
        config=HUNYUAN_VIDEO15_OVERRIDES, inputs=hunyuan_video15_inputs, tiny=tiny_hunyuan_video15_transformer
    )
}
UNSUPPORTED = {}
