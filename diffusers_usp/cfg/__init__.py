"""CFG parallel: the conditional and unconditional branches of classifier-free guidance on two groups of ranks, each
running Ulysses inside itself, with the pipeline's code unchanged. One hook (`hook.py`) picks one of two strategies
per call: `batched.py` (one call on the doubled batch) or `sequential.py` (a cond call, then an uncond call)."""

from .hook import HOOK, apply_cfg_parallel, cfg_axis, cfg_hook, keep_outermost, remove_cfg_parallel
from .step import Computes

__all__ = ["HOOK", "Computes", "apply_cfg_parallel", "cfg_axis", "cfg_hook", "keep_outermost", "remove_cfg_parallel"]
