"""HunyuanImage coverage: no case yet, listed with the reason."""

from .base import Case

CASES: dict[str, Case] = {}
UNSUPPORTED = {
    "HunyuanImageTransformer2DModel": (
        "always attends with a text padding mask over the joint [image, text] sequence (`encoder_attention_mask` is "
        "required, and the text tokens are reordered per sample by validity): needs masked USP"
    ),
}
