"""HunyuanVideo family: none proven yet; the reasons each is not supported."""

from .base import Case

CASES: dict[str, Case] = {}
UNSUPPORTED = {
    "HunyuanVideoTransformer3DModel": "the forward builds the joint key-padding mask from the whole text's valid "
    "count, wrong for a sharded text chunk, and the token refiner needs the whole text: the text (256 tokens, "
    "divisible by P) would have to stay replicated always",
    "HunyuanVideo15Transformer3DModel": "the processor builds a per-query `[B, 1, N, N]` padding mask (padded queries "
    "masked too), not a key-padding mask: needs masked USP",
    "HunyuanVideoFramepackTransformer3DModel": "the forward keeps only the last `original_context_length` tokens "
    "(dropping the history latents) before `norm_out`: the sharded sequence would need a gather after the last block",
}
