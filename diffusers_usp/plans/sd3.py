"""SD3-style MMDiT plans (SD3, AuraFlow): learned absolute position embeddings, text joint with the image.

Neither model has RoPE: positions are added to the patch embeddings before the blocks, so splitting the embedded
tokens is all the position handling they need, and attention, which has no positional term left, is exact whatever
order the all-to-all assembles the per-rank `[text chunk, image chunk]` pieces in. Text is `SplitOrReplicate`:
sharded with the image when P divides its length, else whole on every rank and a replicated block in attention.

ControlNet residuals (`block_controlnet_hidden_states`, one image-token tensor per controlled block) are split like
the image; SD3's ControlNet is parallelized too (below). SD3's IP-Adapter is exact: its processor's second kernel
call attends the image queries to `[image, image-prompt]` keys, which `USPProcessor` runs as sharded self-attention
with the image-prompt tokens (whole on every rank) as a replicated K/V block.
"""

from ..compat import ContextParallelInput, ContextParallelOutput
from .base import SequencePlan, SplitEach, SplitOrReplicate

# SD3: the image and text split where they are embedded (so `skip_layers` may skip any block). Its
# JointAttnProcessor2_0 concatenates `[image, text]`, so replicated text sits at the back. Only `attn` holds the
# text: SD3.5's `attn2` is self-attention over the image alone and must not take its last tokens for text. The last
# block is `context_pre_only` (its text output is dropped), which changes nothing here.
SD3 = SequencePlan(
    split={
        "": {"block_controlnet_hidden_states": SplitEach(split_dim=1, expected_dims=3)},
        "pos_embed": {0: ContextParallelInput(split_dim=1, expected_dims=3, split_output=True)},
        "context_embedder": {0: SplitOrReplicate(split_dim=1, expected_dims=3, split_output=True)},
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
    joint_attention=("transformer_blocks.*.attn",),
    replicated_front=False,
)

# AuraFlow: the text the blocks see is `[8 register tokens, prompt]`, prepended by the forward after
# `context_embedder`, so the text is final only at the first joint block, where both splits sit (a model without
# joint blocks has no `joint_transformer_blocks.0`, and `parallelize` refuses it). Whether the text is split depends
# on that length: the 256-token prompt plus 8 registers divides by 2, 4 and 8. The joint blocks' processor
# concatenates `[text, image]` and the single blocks run on `cat([text, image])` of the local chunks, slicing the
# image back with the local text length.
AURAFLOW = SequencePlan(
    split={
        "joint_transformer_blocks.0": {
            "hidden_states": ContextParallelInput(split_dim=1, expected_dims=3),
            "encoder_hidden_states": SplitOrReplicate(split_dim=1, expected_dims=3),
        },
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
)


def _sd3_controlnet(controlnet) -> SequencePlan | None:
    """SD3's ControlNet: SD3's splits, plus its control condition, patchified by `pos_embed_input` and added to the
    image tokens. Its blocks are all joint (none `context_pre_only`) and hold the text at the back, as SD3's `attn`.
    Each residual is gathered where it is made (`controlnet_blocks.*`, one all-gather each) and handed to the
    transformer whole, whose plan splits it again. Not covered (`None`, so it runs whole): SD3.5 Large's ControlNets
    without `pos_embed` or `context_embedder`, whose input the transformer's `pos_embed` makes in the pipeline.
    """
    if controlnet.pos_embed is None or controlnet.context_embedder is None:
        return None
    return SequencePlan(
        split={
            "pos_embed": {0: ContextParallelInput(split_dim=1, expected_dims=3, split_output=True)},
            "pos_embed_input": {0: ContextParallelInput(split_dim=1, expected_dims=3, split_output=True)},
            "context_embedder": {0: SplitOrReplicate(split_dim=1, expected_dims=3, split_output=True)},
            "controlnet_blocks.*": ContextParallelOutput(gather_dim=1, expected_dims=3),
        },
        joint_attention=("transformer_blocks.*.attn",),
        replicated_front=False,
    )


PLANS = {
    "SD3Transformer2DModel": SD3,
    "AuraFlowTransformer2DModel": AURAFLOW,
    "SD3ControlNetModel": _sd3_controlnet,
}
