"""CogView plans (CogView3-Plus, CogView4): text joint with the image, prepended inside the attention processor.

Each rank's attention sequence is `[its text chunk, its image chunk]`; the processors split the output back with the
local text length. Text is `SplitOrReplicate`: sharded with the image when P divides its length, else whole on every
rank and a replicated block at the front of the attention sequence.
"""

from ..compat import ContextParallelInput, ContextParallelOutput
from .base import SequencePlan, SplitOrReplicate

# CogView3-Plus adds learned 2-D position embeddings to the image patches in `patch_embed` and has no RoPE, so the
# embedded tokens carry their positions. `patch_embed` returns one `[text, image]` tensor that the forward slices
# apart with the whole text length, so the split sits after that, at the first block's inputs.
COGVIEW3PLUS = SequencePlan(
    split={
        "transformer_blocks.0": {
            "hidden_states": ContextParallelInput(split_dim=1, expected_dims=3),
            "encoder_hidden_states": SplitOrReplicate(split_dim=1, expected_dims=3),
        },
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
)

# CogView4: `patch_embed` returns `(image, text)` and `rope` the image's `(cos, sin)` tables, `[S, D]` each; they split
# where they are made, so every block gets local tokens and their rows (the processor rotates only the image part,
# `query[:, :, text_len:]`, with the local text length). A caller-provided `image_rotary_emb` tuple is not split and
# fails in `apply_rotary_emb` with a shape error. The pipeline passes no `attention_mask`; a text padding mask on the
# sharded joint attention is refused by the core.
COGVIEW4 = SequencePlan(
    split={
        "patch_embed": {
            0: ContextParallelInput(split_dim=1, expected_dims=3, split_output=True),
            1: SplitOrReplicate(split_dim=1, expected_dims=3, split_output=True),
        },
        "rope": {
            0: ContextParallelInput(split_dim=0, expected_dims=2, split_output=True),
            1: ContextParallelInput(split_dim=0, expected_dims=2, split_output=True),
        },
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
)

PLANS = {"CogView3PlusTransformer2DModel": COGVIEW3PLUS, "CogView4Transformer2DModel": COGVIEW4}
