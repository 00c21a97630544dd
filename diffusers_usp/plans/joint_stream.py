"""Joint-stream plans: models whose forward concatenates text and image into one stream before the blocks and
slices the text off after the last block (Krea 2, Bria FIBO 2).

Such a stream is split as one sequence at the first block's input and gathered at the last block's output
(`"transformer_blocks.-1"` names the last block whatever the depth), so that the forward's own slice after the blocks
sees the whole stream. Its RoPE table (`[T + I, D]`, built from one `position_ids` covering text and image) is split
at the rotary module's output, like the stream, and the forward's key-padding mask over the stream (`[B, 1, 1, T + I]`)
stays whole: the core applies it after the exchange (`attention.sharded_attention`, dense masks), when this rank holds
every key of its heads. The text refiner that runs before the split attends whole text on every rank (cross role).
"""

from ..compat import ContextParallelInput, ContextParallelOutput
from .base import SequencePlan
from .zimage import ZIMAGE

# Krea 2: `text_fusion` refines the whole prompt on every rank (its layerwise blocks attend over the tapped-layer
# axis, its refiner blocks over the text); then `cat([text, image])` enters the blocks, whose output is gathered
# before `hidden_states[:, text_seq_len:]`. The stream splits anywhere (text and image alike), with uneven chunks
# when P does not divide T + I. The final layer runs on the whole image on every rank (one norm and one linear).
_KREA2 = SequencePlan(
    split={
        "rotary_emb": {
            0: ContextParallelInput(split_dim=0, expected_dims=2, split_output=True),
            1: ContextParallelInput(split_dim=0, expected_dims=2, split_output=True),
        },
        "transformer_blocks.0": {"hidden_states": ContextParallelInput(split_dim=1, expected_dims=3)},
        "transformer_blocks.-1": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
    cross_attention=("text_fusion.*",),
)

# Bria FIBO 2: the noise refiner (over `[image, context]`) and the Perceiver (text to gist tokens) run whole on every
# rank before the stream exists (cross role: their keys are whole); then one `[gist, image, context]` stream (or
# `[image, context, gist]` when a batch pads its gist tokens, with a key-padding `attn_mask` `[B, S]`) enters
# `layers`, with a per-token RoPE table `[1, S, D/2]` and noise mask `[B, S]` passed to every block: all split
# there, like the stream. The key mask follows its keys through the exchange. The injection blocks' cross-attention
# reads whole text. The output is gathered at the last layer, before the forward slices the image rows off.
_FIBO2 = SequencePlan(
    split={
        # Z-Image's block (Fibo 2 reuses it): the same stream, RoPE, noise and key-mask splits at the layers
        "layers.0": ZIMAGE.split["layers.0"],
        "layers.*": ZIMAGE.split["layers.*"],
        "layers.-1": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
    cross_attention=("noise_refiner.*", "perceiver.*", "layers.*.cross_attention"),
)

PLANS = {"Krea2Transformer2DModel": _KREA2, "BriaFibo2Transformer2DModel": _FIBO2}
