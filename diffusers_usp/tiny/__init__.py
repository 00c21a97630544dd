"""Tiny random-weight diffusers models and pipelines, built fully offline, one module per family.

Used by the demo examples and the test-suite. Nothing is downloaded; weights are deterministic functions of ``seed``
and the global RNG state is never touched. Pipelines have no text encoders/tokenizers: pass the
``tiny_<family>_prompt_embeds`` helpers' output to the pipeline call instead of a ``prompt`` (``tiny_call_kwargs``
adds the sizes and guidance the examples use).
"""

from .calls import tiny_call_kwargs
from .cogvideox import (
    COGVIDEOX_LATENT_CHANNELS,
    COGVIDEOX_TEXT_DIM,
    tiny_cogvideox_pipeline,
    tiny_cogvideox_prompt_embeds,
    tiny_cogvideox_transformer,
)
from .flux import (
    FLUX_LATENT_CHANNELS,
    FLUX_POOLED_DIM,
    FLUX_TEXT_DIM,
    flux_transformer_inputs,
    tiny_flux_controlnet,
    tiny_flux_controlnet_pipeline,
    tiny_flux_pipeline,
    tiny_flux_prompt_embeds,
    tiny_flux_transformer,
)
from .flux2 import (
    FLUX2_LATENT_CHANNELS,
    FLUX2_TEXT_DIM,
    flux2_transformer_inputs,
    tiny_flux2_pipeline,
    tiny_flux2_prompt_embeds,
    tiny_flux2_transformer,
)
from .hunyuan_video import (
    HUNYUAN_VIDEO_LATENT_CHANNELS,
    HUNYUAN_VIDEO_POOLED_DIM,
    HUNYUAN_VIDEO_TEXT_DIM,
    tiny_hunyuan_video_pipeline,
    tiny_hunyuan_video_prompt_embeds,
    tiny_hunyuan_video_transformer,
)
from .hunyuan_video15 import (
    HUNYUAN_VIDEO15_LATENT_CHANNELS,
    HUNYUAN_VIDEO15_TEXT_2_DIM,
    HUNYUAN_VIDEO15_TEXT_DIM,
    tiny_hunyuan_video15_pipeline,
    tiny_hunyuan_video15_prompt_embeds,
    tiny_hunyuan_video15_transformer,
)
from .ltx import LTX_LATENT_CHANNELS, LTX_TEXT_DIM, tiny_ltx_pipeline, tiny_ltx_prompt_embeds, tiny_ltx_transformer
from .qwenimage import (
    QWENIMAGE_TEXT_DIM,
    QWENIMAGE_Z_DIM,
    tiny_qwenimage_controlnet,
    tiny_qwenimage_controlnet_pipeline,
    tiny_qwenimage_pipeline,
    tiny_qwenimage_prompt_embeds,
    tiny_qwenimage_transformer,
)
from .sd3 import (
    SD3_LATENT_CHANNELS,
    SD3_POOLED_DIM,
    SD3_TEXT_DIM,
    tiny_sd3_controlnet,
    tiny_sd3_controlnet_pipeline,
    tiny_sd3_pipeline,
    tiny_sd3_prompt_embeds,
    tiny_sd3_transformer,
)
from .wan import (
    WAN_TEXT_DIM,
    WAN_Z_DIM,
    tiny_wan_pipeline,
    tiny_wan_prompt_embeds,
    tiny_wan_transformer,
    wan_transformer_inputs,
)

__all__ = [  # grouped by family
    "tiny_call_kwargs",
    "tiny_flux_transformer",
    "tiny_flux_pipeline",
    "tiny_flux_prompt_embeds",
    "flux_transformer_inputs",
    "tiny_flux_controlnet",
    "tiny_flux_controlnet_pipeline",
    "tiny_flux2_transformer",
    "tiny_flux2_pipeline",
    "tiny_flux2_prompt_embeds",
    "flux2_transformer_inputs",
    "tiny_wan_transformer",
    "tiny_wan_pipeline",
    "tiny_wan_prompt_embeds",
    "wan_transformer_inputs",
    "tiny_sd3_transformer",
    "tiny_sd3_pipeline",
    "tiny_sd3_prompt_embeds",
    "tiny_sd3_controlnet",
    "tiny_sd3_controlnet_pipeline",
    "tiny_cogvideox_transformer",
    "tiny_cogvideox_pipeline",
    "tiny_cogvideox_prompt_embeds",
    "tiny_qwenimage_transformer",
    "tiny_qwenimage_pipeline",
    "tiny_qwenimage_prompt_embeds",
    "tiny_qwenimage_controlnet",
    "tiny_qwenimage_controlnet_pipeline",
    "tiny_ltx_transformer",
    "tiny_ltx_pipeline",
    "tiny_ltx_prompt_embeds",
    "tiny_hunyuan_video_transformer",
    "tiny_hunyuan_video_pipeline",
    "tiny_hunyuan_video_prompt_embeds",
    "tiny_hunyuan_video15_transformer",
    "tiny_hunyuan_video15_pipeline",
    "tiny_hunyuan_video15_prompt_embeds",
    "FLUX_TEXT_DIM",
    "FLUX_POOLED_DIM",
    "FLUX_LATENT_CHANNELS",
    "FLUX2_TEXT_DIM",
    "FLUX2_LATENT_CHANNELS",
    "WAN_TEXT_DIM",
    "WAN_Z_DIM",
    "SD3_TEXT_DIM",
    "SD3_POOLED_DIM",
    "SD3_LATENT_CHANNELS",
    "COGVIDEOX_TEXT_DIM",
    "COGVIDEOX_LATENT_CHANNELS",
    "QWENIMAGE_TEXT_DIM",
    "QWENIMAGE_Z_DIM",
    "LTX_TEXT_DIM",
    "LTX_LATENT_CHANNELS",
    "HUNYUAN_VIDEO_TEXT_DIM",
    "HUNYUAN_VIDEO_POOLED_DIM",
    "HUNYUAN_VIDEO_LATENT_CHANNELS",
    "HUNYUAN_VIDEO15_TEXT_DIM",
    "HUNYUAN_VIDEO15_TEXT_2_DIM",
    "HUNYUAN_VIDEO15_LATENT_CHANNELS",
]
