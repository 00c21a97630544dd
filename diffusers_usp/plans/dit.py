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

from ..compat import ContextParallelInput, ContextParallelOutput
from .base import SequencePlan, SplitUnlessBroadcast, UnsupportedConfig

_FIRST_BLOCK = {"transformer_blocks.0": {"hidden_states": ContextParallelInput(split_dim=1, expected_dims=3)}}

# DiT: self-attention only (no `attn2`); `proj_out_2` is the last per-token layer.
DIT = SequencePlan(split={**_FIRST_BLOCK, "proj_out_2": ContextParallelOutput(gather_dim=1, expected_dims=3)})

# PixArt-alpha/sigma: `adaln_single` modulation, T5 text through cross-attention.
PIXART = SequencePlan(
    split={**_FIRST_BLOCK, "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3)},
    cross_attention=("transformer_blocks.*.attn2",),
)


# The U-Net transformer blocks (`Transformer2DModel`, `DreamLiteTransformer2DModel`), each parallelized on its own
# (`parallelize(unet.down_blocks[1].attentions[0])`), and `Transformer2DModel`'s other input modes. The blocks run on
# local tokens; the gather follows the last module that still runs per token:
# - continuous input, linear projection (SD 2.x, SDXL): `proj_out`, a Linear on `[B, S, C]`;
# - continuous input, 1x1-conv projection (SD 1.x, diffusers' default): the last block. Not `proj_out`: the forward
#   reshapes the tokens to the whole `[B, H, W, C]` before that conv;
# - discrete input (`num_vector_embeds`, VQ-Diffusion): `out`, a Linear before the per-token log-softmax;
# - patched input (`patch_size`): `proj_out_2` (`ada_norm_zero`, DiT's layout) or `proj_out` (`ada_norm_single`,
#   PixArt's), before the forward unpatchifies with whole-image sizes.
# Group norm, `proj_in` and the patch and position embeddings run on the whole input, before the first block's split.
# `attn2` is cross-attention to text every rank holds whole (local, no collective), and so is `attn1` with
# `only_cross_attention`; with `double_self_attention`, `attn2` self-attends (sharded).
def _unet_transformer(model) -> SequencePlan:
    cfg = model.config
    if any(getattr(block, "fuser", None) is not None for block in model.transformer_blocks):
        raise UnsupportedConfig(
            f"{type(model).__name__} with attention_type={cfg.attention_type!r} is not supported by parallelize: its "
            "GLIGEN layer self-attends over the image tokens joined with the grounding tokens, which every rank "
            "would send through the all-to-all. Use attention_type='default', or USPProcessor() alone (heads only)."
        )
    if getattr(model, "is_input_vectorized", False):
        last = "out"
    elif getattr(model, "is_input_patches", False):
        last = "proj_out" if cfg.norm_type == "ada_norm_single" else "proj_out_2"
    else:
        last = "proj_out" if cfg.use_linear_projection else "transformer_blocks.-1"
    local = ()
    if cfg.cross_attention_dim is not None and not cfg.double_self_attention:
        local += ("transformer_blocks.*.attn2",)
    if cfg.only_cross_attention:
        local += ("transformer_blocks.*.attn1",)
    return SequencePlan(
        split={**_FIRST_BLOCK, last: ContextParallelOutput(gather_dim=1, expected_dims=3)},
        cross_attention=local,
    )


# HunyuanDiT: the pipeline passes the image's RoPE as a `(cos, sin)` tuple of `[S, D]` tables, split row for row
# with the tokens; a `[1, D]` table rotates every token alike (it broadcasts) and stays whole. The long skip
# connections join block outputs of the same local tokens. Not covered: ControlNet residuals
# (`controlnet_block_samples`, whole-sequence tensors; a shape error).
_ROPE_ROWS = SplitUnlessBroadcast(split_dim=0, expected_dims=2)
HUNYUAN_DIT = SequencePlan(
    split={
        "": {"image_rotary_emb": [_ROPE_ROWS, _ROPE_ROWS]},
        "blocks.0": {"hidden_states": ContextParallelInput(split_dim=1, expected_dims=3)},
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
    cross_attention=("blocks.*.attn2",),
)

# TransformerTemporalModel (UNet video models): attention runs over the frames of each pixel, `[B*H*W, F, C]`, and
# every row is independent, so splitting the rows after the input GroupNorm (which needs every pixel) makes every
# attention local: no all-to-all, only the final gather.
TRANSFORMER_TEMPORAL = SequencePlan(
    split={
        "proj_in": {"input": ContextParallelInput(split_dim=0, expected_dims=3)},
        "proj_out": ContextParallelOutput(gather_dim=0, expected_dims=3),
    },
    cross_attention=("*",),
)

PLANS = {
    "DiTTransformer2DModel": DIT,
    "PixArtTransformer2DModel": PIXART,
    "Transformer2DModel": _unet_transformer,
    "DreamLiteTransformer2DModel": _unet_transformer,
    "HunyuanDiT2DModel": HUNYUAN_DIT,
    "TransformerTemporalModel": TRANSFORMER_TEMPORAL,
}
