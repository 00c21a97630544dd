"""HunyuanImage coverage: no case, listed with the reason."""

from .base import Case

CASES: dict[str, Case] = {}
UNSUPPORTED = {
    "HunyuanImageTransformer2DModel": (
        "the text must stay whole up to the blocks (its token refiner pools over the valid text and self-attends with "
        "a per-query mask), and then the forward builds the joint [image, text] padding mask from the full text mask: "
        "the text could only stay replicated, which the core does only when P does not divide its length, or be "
        "split at the first block with the mask's text segment split alike, which no contiguous split gives"
    ),
}
