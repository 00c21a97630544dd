"""Z-Image's plan: image and text refined apart, then one unified sequence split contiguously.

OmniGen, PRX and HiDream-I1 have plans of their own (`omnigen.py`, `prx.py`, `hidream.py`).
"""

from ..compat import ContextParallelInput, ContextParallelOutput
from .base import SequencePlan

# Z-Image: `noise_refiner` (image) and `context_refiner` (text) run first, each on its whole modality, then the
# forward builds the unified `[image, text]` sequence and its RoPE table row for row; the split cuts both into
# contiguous chunks at the first main layer (attention has no positional term beyond RoPE, so mixed chunks are
# exact). Image and text are each padded to a multiple of 32 tokens, so the unified length divides by 2, 4 and 8
# (by 3 only at some sizes). The refiners run before the split on sequences every rank holds whole, so they attend
# locally with no collective (2 layers each, against 30 main ones).
#
# Covered: the basic mode, batch rows of different lengths included (CFG batches the prompt and the negative
# prompt): the rows are right-padded to the longest and the main layers get a `[B, S]` key-padding mask, which the
# core carries through the all-to-all. Not covered: the omni mode (SigLIP tokens, per-token `noise_mask`), whose
# final layer takes the whole-sequence `noise_mask` while holding local tokens (a shape error), and ControlNet
# residuals.
ZIMAGE = SequencePlan(
    split={
        "layers.0": {"x": ContextParallelInput(split_dim=1, expected_dims=3)},
        # The forward hands every layer the same whole RoPE table and masks, so every layer splits them.
        "layers.*": {
            "attn_mask": ContextParallelInput(split_dim=1, expected_dims=2),
            "freqs_cis": ContextParallelInput(split_dim=1, expected_dims=3),
            "noise_mask": ContextParallelInput(split_dim=1, expected_dims=2),
        },
        # One final layer per patch size; the one the forward picks gathers before unpatchifying.
        "all_final_layer.*": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
    cross_attention=("noise_refiner.*", "context_refiner.*", "siglip_refiner.*"),
)

PLANS = {"ZImageTransformer2DModel": ZIMAGE}
