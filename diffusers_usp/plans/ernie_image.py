"""Single-stream MMDiT plans whose forward builds one joint `[image, text]` stream, with every per-token tensor laid
out in that same joint order.

When the forward concatenates image and text itself and derives the RoPE table, the per-token modulation and the
key-padding mask for the joint stream, there is no point where the image and the text are apart *and* their tables
are too. But nothing needs them apart: the blocks treat every token alike, so the joint stream is simply one
sequence, split contiguously (`tensor_split` chunks of `S = image + text` tokens) at the first block, with each
block's copy of the full-length tables split the same way. A rank may then hold image tokens, text tokens or both;
the key-padding mask travels with its keys through the all-to-all. The stream is gathered after the output
projection, before the forward slices the image rows off it.

Not supported here (reasons in `tests/zoo/ernie_image.py`): Krea 2, Bria FIBO 2 and Ideogram 4.
"""

from ..compat import ContextParallelInput, ContextParallelOutput
from .base import SequencePlan

# ERNIE-Image: blocks run sequence-first (`x` is `[S, B, H]`). The forward builds the RoPE table `[B, S, 1, D]`, the
# six adaLN modulations expanded to every token (`[S, B, H]` each) and the text padding mask `[B, 1, 1, S]` at full
# length and hands the same ones to every layer, so each layer splits its own copy; `x` is split once, at layer 0
# (every later layer receives the local stream). `final_linear` is gathered, not `final_norm`: it is the narrowest
# tensor before `[:N_img]` drops the text rows.
_ERNIE_IMAGE = SequencePlan(
    split={
        "layers.0": {"x": ContextParallelInput(split_dim=0, expected_dims=3)},
        "layers.*": {
            "rotary_pos_emb": ContextParallelInput(split_dim=1, expected_dims=4),
            "temb": [ContextParallelInput(split_dim=0, expected_dims=3)] * 6,
            "attention_mask": ContextParallelInput(split_dim=3, expected_dims=4),
        },
        "final_linear": ContextParallelOutput(gather_dim=0, expected_dims=3),
    },
)

PLANS = {"ErnieImageTransformer2DModel": _ERNIE_IMAGE}
