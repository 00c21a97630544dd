"""Video plans: Allegro (text by cross-attention), EasyAnimate (text joint with the video) and the temporal transformer
of UNet video models."""

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
    "TransformerTemporalModel": TRANSFORMER_TEMPORAL,
}
