"""Ulysses sequence parallelism for Hugging Face diffusers transformers."""

from .graphs import apply_cuda_graphs, remove_cuda_graphs
from .parallelize import parallelize
from .plans import PLANS, Replicated, SequencePlan, SplitOrReplicate
from .processor import USPProcessor

__version__ = "0.1.0"
__all__ = [
    "USPProcessor",
    "parallelize",
    "apply_cuda_graphs",
    "remove_cuda_graphs",
    "SequencePlan",
    "SplitOrReplicate",
    "Replicated",
    "PLANS",
    "__version__",
]
