"""JoyImage plans: double-stream blocks whose attention joins `[image, text]` (text at the back), no attention mask.

JoyImage-Edit builds its RoPE tables inside forward, with a plain method (`get_rotary_pos_embed`) and from the full
latent grid, and hands every block the same nested tuple `((vis_cos, vis_sin), (txt_cos, txt_sin) or None)`. So the
tokens are split where the blocks begin, not at the embedders: the image and text streams at block 0 (every later
block receives the local streams), the RoPE tables at every block (each gets the full ones). The text and its RoPE
rows are `SplitOrReplicate` with the same length, so they are split, or kept whole, together; kept whole, the text is
a replicated block at the back of the joint sequence (`replicated_front=False`).

JoyImage-Edit-Plus takes a flat `[B, N, C, t, h, w]` patch sequence (target and references, padded to N) and builds,
inside forward and from the whole sequence, its RoPE tables (batched `[B, N, D]`) and one key mask over the joint
`[image, text]` sequence, `[B, 1, 1, N + T]` (image padding, then text padding). The same split at block 0 applies;
the mask reaches every block whole, and the core applies it after the exchange in the sequence's own order
(`attention.sharded_attention`, masks over the whole sequence).
"""

from ..compat import ContextParallelInput, ContextParallelOutput
from .base import SequencePlan, SplitOrReplicate

_IMAGE_ROPE = ContextParallelInput(split_dim=0, expected_dims=2)  # [I, D] cos or sin
_TEXT_ROPE = SplitOrReplicate(split_dim=0, expected_dims=2)  # [T, D]; None with rope_type="rope", then left alone

_JOYIMAGE_EDIT = SequencePlan(
    split={
        "double_blocks.0": {
            "hidden_states": ContextParallelInput(split_dim=1, expected_dims=3),
            "encoder_hidden_states": SplitOrReplicate(split_dim=1, expected_dims=3),
        },
        "double_blocks.*": {"image_rotary_emb": ((_IMAGE_ROPE, _IMAGE_ROPE), (_TEXT_ROPE, _TEXT_ROPE))},
        # Before `unpatchify`, which reshapes by the full (t, h, w) grid.
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
    replicated_front=False,
)

_BATCHED_ROPE = ContextParallelInput(split_dim=1, expected_dims=3)  # [B, N, D] cos or sin
_JOYIMAGE_EDIT_PLUS = SequencePlan(
    split={
        "double_blocks.0": _JOYIMAGE_EDIT.split["double_blocks.0"],
        "double_blocks.*": {"image_rotary_emb": (_BATCHED_ROPE, _BATCHED_ROPE)},
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),  # before the reshape by the whole N
    },
    replicated_front=False,
)

PLANS = {
    "JoyImageEditTransformer3DModel": _JOYIMAGE_EDIT,
    "JoyImageEditPlusTransformer3DModel": _JOYIMAGE_EDIT_PLUS,
}
