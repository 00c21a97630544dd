"""Allegro's plan: video tokens in self-attention, text by cross-attention."""

from ..compat import ContextParallelInput, ContextParallelOutput
from .base import SequencePlan

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
    cross_attention=("transformer_blocks.*.attn2",),
)

PLANS = {"AllegroTransformer3DModel": ALLEGRO}
