"""Video plans: Allegro (text by cross-attention), EasyAnimate (text joint with the video), Latte (spatial and
temporal blocks taking turns) and the temporal transformer of UNet video models."""

from diffusers.models._modeling_parallel import ContextParallelInput, ContextParallelOutput

from .base import SequencePlan, SplitOrReplicate

# Allegro: the pipeline passes `image_rotary_emb = ((t, h, w) frequency tables, (t, h, w) position ids)`. The tables
# are looked up by position (`F.embedding(ids, table)`), so they stay whole; the `[1, S]` position ids are per token
# and split like the video. The video is patch-embedded per frame and flattened in the forward, so it splits at the
# first block's input. Text only enters through cross-attention (`attn2`), whose K/V every rank holds.
ALLEGRO = SequencePlan(
    split={
        "": {
            "image_rotary_emb": (
                None,
                (
                    ContextParallelInput(split_dim=1, expected_dims=2),
                    ContextParallelInput(split_dim=1, expected_dims=2),
                    ContextParallelInput(split_dim=1, expected_dims=2),
                ),
            ),
        },
        "transformer_blocks.0": {"hidden_states": ContextParallelInput(split_dim=1, expected_dims=3)},
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
    local_attention=("transformer_blocks.*.attn2",),
)

# EasyAnimate: every block concatenates `[text, video]` inside attention (its MMDiT blocks with their own text
# projections, the others through the shared ones), and RoPE covers the video rows only, so the `(cos, sin)` table
# from `rope_embedding` splits like the video. The video is patch-embedded and flattened inside the forward, so the
# streams split at the first block's inputs; text is sharded when P divides its length, else a replicated block.
EASYANIMATE = SequencePlan(
    split={
        "rope_embedding": {
            0: ContextParallelInput(split_dim=0, expected_dims=2, split_output=True),
            1: ContextParallelInput(split_dim=0, expected_dims=2, split_output=True),
        },
        "transformer_blocks.0": {
            "hidden_states": ContextParallelInput(split_dim=1, expected_dims=3),
            "encoder_hidden_states": SplitOrReplicate(split_dim=1, expected_dims=3),
        },
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
)

# Latte: spatial blocks attend over the `H*W` patches of each frame (`[B*F, H*W, C]`), temporal blocks over the `F`
# frames of each patch (`[B*H*W, F, C]`), the forward reshaping between the two layouts. Splitting the patches of
# every frame makes the spatial self-attention sharded and leaves each rank whole frame columns of its own patches,
# so temporal attention needs no collective (local), like the cross-attention to the caption.
# The temporal blocks' `timestep` is the AdaLN-single embedding repeated per patch, `[B*H*W, 6C]`, built in the
# forward from the full patch count: it splits along its rows at every temporal block. Rank r then holds rows
# `[r*B*H*W/P, (r+1)*B*H*W/P)` where its tokens need rows `b*H*W + [r*H*W/P, (r+1)*H*W/P)` for each sample b: the
# same rows when B is 1, and the same values when every sample has the same timestep, as `LattePipeline` passes
# (`t.expand(batch)`). Per-sample timesteps with B > 1 would modulate with the wrong samples' rows.
LATTE = SequencePlan(
    split={
        "transformer_blocks.0": {"hidden_states": ContextParallelInput(split_dim=1, expected_dims=3)},
        "temporal_transformer_blocks.*": {"timestep": ContextParallelInput(split_dim=0, expected_dims=2)},
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
    local_attention=("transformer_blocks.*.attn2", "temporal_transformer_blocks.*"),
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
    "AllegroTransformer3DModel": ALLEGRO,
    "EasyAnimateTransformer3DModel": EASYANIMATE,
    "LatteTransformer3DModel": LATTE,
    "TransformerTemporalModel": TRANSFORMER_TEMPORAL,
}
