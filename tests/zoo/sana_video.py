"""SANA video family: none proven yet; the reasons each is not supported."""

from .base import Case

CASES: dict[str, Case] = {}
UNSUPPORTED = {
    "SanaVideoTransformer3DModel": "self-attention is linear attention computed with matmuls "
    "(`SanaLinearAttnProcessor3_0`, no SDPA), and the feed-forward (`GLUMBTempConv`) convolves over each frame's "
    "H x W grid and across frames",
    "SanaWMTransformer3DModel": "Gated DeltaNet linear-attention blocks, temporal short convolutions and "
    "`GLUMBConvTemp` convolutions over the token grid; its softmax blocks call SDPA from their own forward, not "
    "through an attention processor",
    "SanaWMLTX2RefinerTransformer3DModel": "its pipeline runs it with a sliding-window KV cache: self-attention "
    "prepends cached sink and history K/V (which would be per-rank shards) to the current block's keys",
}
