"""DiT-style plans (DiT, PixArt, HunyuanDiT, and the `Transformer2DModel`/DreamLite/`TransformerTemporalModel`
blocks of U-Nets): blocks on
image tokens, with text, if any, only through cross-attention (`attn2`).

The timestep and class modulation is per sample, not per token, so the image tokens (and HunyuanDiT's RoPE rows)
are the only things to split. They split at the first block's `hidden_states`, the one place where every
`Transformer2DModel` input mode holds its tokens as `[B, S, C]`, and the gather follows the last module that still
runs per token, before the forward unpatchifies with whole-image sizes. Cross-attention reads text every rank holds
whole, so it attends locally, with no collective. The pipelines pass no self-attention mask (a text padding mask
reaches only `attn2`, where it is applied locally).
"""

from diffusers.models._modeling_parallel import ContextParallelInput, ContextParallelOutput

from .base import SequencePlan

_FIRST_BLOCK = {"transformer_blocks.0": {"hidden_states": ContextParallelInput(split_dim=1, expected_dims=3)}}

# DiT: self-attention only (no `attn2`); `proj_out_2` is the last per-token layer.
DIT = SequencePlan(split={**_FIRST_BLOCK, "proj_out_2": ContextParallelOutput(gather_dim=1, expected_dims=3)})

# PixArt-alpha/sigma: `adaln_single` modulation, T5 text through cross-attention.
PIXART = SequencePlan(
    split={**_FIRST_BLOCK, "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3)},
    local_attention=("transformer_blocks.*.attn2",),
)

# The U-Net transformer blocks (`Transformer2DModel`, `DreamLiteTransformer2DModel`), each parallelized on its own
# (`parallelize(unet.down_blocks[1].attentions[0])`): group norm and `proj_in` run on the whole input, the blocks on
# local tokens. Only `use_linear_projection=True` (SD 2.x, SDXL) has a module to gather at: `proj_out` is then a
# Linear on `[B, S, C]`. With the 1x1-conv projection (SD 1.x) the forward reshapes the local tokens to the whole
# `[B, H, W, C]` before `proj_out` and fails with a shape error; `Transformer2DModel`'s patched inputs with
# `ada_norm_zero` (load them as `DiTTransformer2DModel`) and discrete inputs have no `proj_out`, so `parallelize`
# refuses them. Caveat: `attn2` is taken as cross-attention; a block run without `encoder_hidden_states`, or with
# `double_self_attention=True`, self-attends in `attn2`, which this plan would attend locally, wrongly.
UNET_TRANSFORMER = SequencePlan(
    split={**_FIRST_BLOCK, "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3)},
    local_attention=("transformer_blocks.*.attn2",),
)

# HunyuanDiT: the pipeline passes the image's RoPE as a `(cos, sin)` tuple of `[S, D]` tables, split row for row
# with the tokens. The long skip connections join block outputs of the same local tokens. Not covered: ControlNet
# residuals (`controlnet_block_samples`, whole-sequence tensors; a shape error).
HUNYUAN_DIT = SequencePlan(
    split={
        "": {
            "image_rotary_emb": [
                ContextParallelInput(split_dim=0, expected_dims=2),
                ContextParallelInput(split_dim=0, expected_dims=2),
            ]
        },
        "blocks.0": {"hidden_states": ContextParallelInput(split_dim=1, expected_dims=3)},
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
    local_attention=("blocks.*.attn2",),
)

# TransformerTemporalModel (UNet video models): attention runs over the frames of each pixel, `[B*H*W, F, C]`, and
# every row is independent, so splitting the rows after the input GroupNorm (which needs every pixel) makes every
# attention local: no all-to-all, only the final gather.
TRANSFORMER_TEMPORAL = SequencePlan(
    split={
        "proj_in": {"input": ContextParallelInput(split_dim=0, expected_dims=3)},
        "proj_out": ContextParallelOutput(gather_dim=0, expected_dims=3),
    },
    local_attention=("*",),
)

PLANS = {
    "DiTTransformer2DModel": DIT,
    "PixArtTransformer2DModel": PIXART,
    "Transformer2DModel": UNET_TRANSFORMER,
    "DreamLiteTransformer2DModel": UNET_TRANSFORMER,
    "HunyuanDiT2DModel": HUNYUAN_DIT,
    "TransformerTemporalModel": TRANSFORMER_TEMPORAL,
}
