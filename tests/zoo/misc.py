"""Transformers that are not sequence models Ulysses can shard, with the reason each is not supported."""

from .base import Case

CASES: dict[str, Case] = {}
UNSUPPORTED = {
    "PriorTransformer": "causal + text padding attention mask (its pipelines pass the text mask) over the short "
    "CLIP prior sequence (77 text tokens + 4 embeddings) that predicts one image embedding",
    "RFD4ProteinaTransformer": "attention biased by an N x N pair representation with triangle multiplicative "
    "updates (protein structure): the pairs, not a token sequence, carry the state",
}
