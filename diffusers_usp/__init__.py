"""Ulysses sequence parallelism for Hugging Face diffusers transformers."""

from .parallelize import parallelize
from .plans import PLANS, SequencePlan, SplitOrReplicate
from .processor import USPProcessor

__version__ = "0.1.0"
__all__ = ["USPProcessor", "parallelize", "SequencePlan", "SplitOrReplicate", "PLANS", "__version__"]
