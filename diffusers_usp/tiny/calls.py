"""How the examples call each tiny pipeline: sizes, guidance, and prompt embeddings in place of a prompt."""

import torch

from .chroma import tiny_chroma_prompt_embeds
from .cogvideox import tiny_cogvideox_prompt_embeds
from .flux import tiny_flux_prompt_embeds
from .flux2 import tiny_flux2_prompt_embeds
from .hunyuan_video import tiny_hunyuan_video_prompt_embeds
from .hunyuan_video15 import tiny_hunyuan_video15_prompt_embeds
from .ltx import tiny_ltx_prompt_embeds
from .ltx2 import tiny_ltx2_prompt_embeds
from .qwenimage import tiny_qwenimage_prompt_embeds
from .sana import tiny_sana_prompt_embeds
from .sd3 import tiny_sd3_prompt_embeds
from .wan import tiny_wan_prompt_embeds

# Sizes whose sharded token counts divide by 2, 3, 4, 6 and 8 ranks: flux, flux2 and sd3 48x48 and qwenimage 96x96 have
# 12x12 = 144 image tokens (chroma 48x48 too), wan 96x96x5 has 2x6x6 = 72 patches, cogvideox 32x64x9 has 3x2x4 = 24,
# ltx 32x32x9 has 3x8x8 = 192, hunyuan_video 64x64x9 has 3x4x4 = 48 and hunyuan_video15 32x48x5 has 2x4x6 = 48 (text
# tokens need not divide: they can stay replicated).
# sana 128x96 has 4x3 = 12 latent tokens in 4 rows (split by whole rows: up to 4 ranks); Sana needs sizes divisible by
# 32, no resolution binning (it snaps sizes to the real model's table), and its negative prompt given as embeddings.
# Guidance is each pipeline's usual value; Qwen-Image's CFG is `true_cfg_scale`, on because its embeddings include
# negative ones.
_CALLS = {
    "flux": (tiny_flux_prompt_embeds, dict(height=48, width=48, guidance_scale=3.5)),
    "flux2": (tiny_flux2_prompt_embeds, dict(height=48, width=48, guidance_scale=4.0)),
    "wan": (tiny_wan_prompt_embeds, dict(height=96, width=96, num_frames=5, guidance_scale=5.0)),
    "sd3": (tiny_sd3_prompt_embeds, dict(height=48, width=48, guidance_scale=3.5)),
    "cogvideox": (tiny_cogvideox_prompt_embeds, dict(height=32, width=64, num_frames=9, guidance_scale=6.0)),
    "qwenimage": (tiny_qwenimage_prompt_embeds, dict(height=96, width=96, true_cfg_scale=4.0)),
    "ltx": (tiny_ltx_prompt_embeds, dict(height=32, width=32, num_frames=9, guidance_scale=3.0)),
    # 3x8x8 = 192 video and 24 audio tokens; STG on block 1 (the tiny transformer has 2), as the LTX-2.3 pipelines
    # run it on block 28: a third forward per step whose perturbed self-attentions skip attention
    "ltx2": (
        tiny_ltx2_prompt_embeds,
        dict(
            height=32, width=32, num_frames=9, frame_rate=9.375, guidance_scale=3.0, spatio_temporal_guidance_blocks=[1]
        ),
    ),  # fmt: skip
    "hunyuan_video": (tiny_hunyuan_video_prompt_embeds, dict(height=64, width=64, num_frames=9, guidance_scale=6.0)),
    "sana": (
        tiny_sana_prompt_embeds,
        dict(height=128, width=96, guidance_scale=4.5, negative_prompt=None, use_resolution_binning=False),
    ),
    "chroma": (tiny_chroma_prompt_embeds, dict(height=48, width=48, guidance_scale=4.0)),
    # CFG through the pipeline's guider (guidance 6): two forwards per step, the prompt's and the negative prompt's
    "hunyuan_video15": (tiny_hunyuan_video15_prompt_embeds, dict(height=32, width=48, num_frames=5)),
}


def tiny_call_kwargs(family: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> dict:
    """Keyword arguments for a call of the family's tiny pipeline, apart from steps, generator and output type.

    Args:
        family (`str`): One of `"flux"`, `"flux2"`, `"wan"`, `"sd3"`, `"cogvideox"`, `"qwenimage"`, `"ltx"`,
            `"ltx2"`, `"hunyuan_video"`, `"sana"`, `"chroma"`, `"hunyuan_video15"`.
        device (`torch.device` or `str`): Device of the pipeline; the embeddings are moved there.
        dtype (`torch.dtype`): Dtype of the pipeline; the embeddings take it.
    """
    if family not in _CALLS:
        raise ValueError(f"No tiny call for {family!r}; choose one of {sorted(_CALLS)}.")
    embeds, call = _CALLS[family]
    return {**call, **{name: x.to(device) for name, x in embeds(dtype=dtype).items()}}
