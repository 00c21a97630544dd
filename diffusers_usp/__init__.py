"""Ulysses sequence parallelism for Hugging Face diffusers transformers."""

from .graphs import apply_cuda_graphs, remove_cuda_graphs
from .launch import notebook_launch
from .parallelize import parallelize, remove_parallelism
from .plans import PLANS, Replicated, SequencePlan, SplitEach, SplitOrReplicate
from .processor import USPProcessor

__version__ = "0.1.0"
__all__ = [
    "USPProcessor",
    "parallelize",
    "remove_parallelism",
    "apply_cuda_graphs",
    "remove_cuda_graphs",
    "SequencePlan",
    "SplitOrReplicate",
    "Replicated",
    "SplitEach",
    "PLANS",
    "notebook_launch",
    "__version__",
]
