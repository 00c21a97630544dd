"""Lumina plans (Lumina-Image 2.0): refiners on each modality alone, then single-stream layers on `[text, image]`.

The forward builds the joint sequence itself (`joint_hidden_states[i, :cap_len] = text`, the image after it) from
the whole refined text and image, so nothing can be split before it exists: the split sits at the first main
layer's inputs and cuts the joint sequence, with its RoPE table (built for the same `[text, image]` rows by
`rope_embedder`), into contiguous chunks. Attention has no positional term beyond RoPE, so ranks holding some text
and some image rows are exact. The whole joint length (prompt tokens + image patches) must then divide by P.

The refiners run before the split, on whole sequences every rank holds: `context_refiner` (text with its padding
mask) and `noise_refiner` (image) attend locally, with no collective. They are 2 layers of 28.

LuminaNextDiT2DModel: `lumina_next.py`.
"""

from ..compat import ContextParallelInput, ContextParallelOutput
from .base import SequencePlan

# Batch rows with prompts of different lengths are right-padded to the longest joint sequence, and the layers get a
# `[B, S]` padding mask, a key-padding mask the core carries through the all-to-all. `norm_out` is the last module
# on the sequence before the forward unpatchifies the image rows, with whole-sequence offsets.
LUMINA2 = SequencePlan(
    split={
        "layers.0": {"hidden_states": ContextParallelInput(split_dim=1, expected_dims=3)},
        # The forward hands every layer the whole RoPE table and padding mask, so every layer splits them.
        "layers.*": {
            "image_rotary_emb": ContextParallelInput(split_dim=1, expected_dims=3),
            "attention_mask": ContextParallelInput(split_dim=1, expected_dims=2),
        },
        "norm_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
    cross_attention=("context_refiner.*", "noise_refiner.*"),
)

PLANS = {"Lumina2Transformer2DModel": LUMINA2}
