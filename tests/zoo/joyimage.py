"""JoyImage family coverage: no case yet, both classes listed with the reason."""

from .base import Case

CASES: dict[str, Case] = {}
UNSUPPORTED = {
    "JoyImageEditTransformer3DModel": (
        "the RoPE tables are built inside forward by a plain method (`get_rotary_pos_embed`) from the full latent "
        "grid and reach the blocks as a nested tuple, so no module input or output can split them with the tokens"
    ),
    "JoyImageEditPlusTransformer3DModel": (
        "its pipeline always passes a text padding mask over the joint [image, text] sequence (needs masked USP); "
        "the per-sample RoPE is also built inside forward, with no module boundary to split it"
    ),
}
