"""Plan-language specs for joint text/image sequences, beyond one tensor per argument.

- `SplitFront`: a joint tensor whose first rows are the sequence split earlier in this forward (the image) and whose
  other rows (the text) stay whole on every rank, at any P: the split of only the image rows of a joint tensor.
- `BlockCausalFromSegments`, a rule over several arguments at once (a plan key that is a tuple of argument names):
  turns a model's own per-segment description of a block-causal sequence into one `token_mask.BlockCausalMask`,
  which the core applies after the exchange.

A rule over several arguments has a `rewrite(values, state)` method: it gets the named arguments of the module's
forward (`None` where not given) and returns those to replace. The split hooks call it only with several ranks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..compat import ContextParallelInput
from ..token_mask import BlockCausalMask

if TYPE_CHECKING:
    from ..sequence import SequenceState


@dataclass(frozen=True)
class SplitFront(ContextParallelInput):
    """A joint tensor `[image, text]` along `split_dim` whose first rows belong to the sequence split earlier in this
    forward and whose other rows stay whole on every rank: this rank's rows of that sequence, then all the others.

    For models that build one tensor over image and text inside their forward and carry the text whole through
    every block: HiDream's RoPE table (`[B, N + T, ...]`, from `cat(img_ids, txt_ids)`) and its single-stream key
    scale (`[B, N + T]`). The other rows become the replicated block of joint attention, after the sharded tokens
    (a plan with `replicated_front=False`), whether or not P divides their count.
    """

    def split_tensor(self, x: torch.Tensor, state: SequenceState, name: str) -> torch.Tensor:
        total, start, stop = state.held(name)
        size = x.shape[self.split_dim]
        if size < total:
            raise ValueError(f"`{name}` has {size} rows, fewer than the {total} tokens of the sequence split before.")
        state.replicated = size - total
        own = x.narrow(self.split_dim, start, stop - start)
        return torch.cat([own, x.narrow(self.split_dim, total, size - total)], dim=self.split_dim)


@dataclass(frozen=True)
class BlockCausalFromSegments:
    """The block-causal attention of a forward that describes it as segments, as one mask the core applies.

    Keyed in a plan by the tuple `(segments, key_valid, mask)` of argument names. `segments` is a list of
    `(start, stop, is_text)` runs covering the sequence's first tokens (causal text, or one bidirectional block
    each); every token after the last segment is one more bidirectional block (Qwen-Image 2.1's target image).
    `key_valid` is an optional `[B, S]` key-padding vector over the whole sequence. The rule passes `segments=None`
    (the model's processor then makes one kernel call, with its mask argument) and, as `mask`, a `BlockCausalMask`.
    Without `segments` (a decode step, or a mask the model built itself) it changes nothing.
    """

    def rewrite(self, values: dict, state: SequenceState) -> dict:
        segments_name, valid_name, mask_name = values
        segments, key_valid = values[segments_name], values[valid_name]
        if segments is None:
            return {}
        total = key_valid.shape[-1] if key_valid is not None else state.held(segments_name)[0]
        runs = [(start, stop, -1 if is_text else i) for i, (start, stop, is_text) in enumerate(segments)]
        prefix = runs[-1][1] if runs else 0
        if prefix < total:
            runs.append((prefix, total, len(runs)))
        return {segments_name: None, mask_name: BlockCausalMask(tuple(runs), key_valid)}


PLANS: dict = {}  # specs only; the plans that use them sit in their family modules
