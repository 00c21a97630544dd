"""What a sequence plan is: diffusers' `_cp_plan` plus what Ulysses needs that `_cp_plan` does not say.

A plan is diffusers' `_cp_plan` (module path -> `ContextParallelInput`s to split, or `ContextParallelOutput`s to
gather) plus which attention modules attend to replicated K/V (cross-attention, no collective) and where replicated
joint tokens sit, and which attend from one sharded sequence to another (`two_sequences`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

import torch

from ..comm import chunk_sizes
from ..compat import ContextParallelInput, ContextParallelModelPlan, ContextParallelOutput

if TYPE_CHECKING:
    from ..sequence import SequenceState


def shard_tensor(x: torch.Tensor, spec: ContextParallelInput, state: SequenceState, name: str) -> torch.Tensor:
    """`x` split by `spec`: by its own `split_tensor` rule (the spec classes below), or as a plain diffusers
    `ContextParallelInput` (`split_tokens`)."""
    if spec.expected_dims is not None and x.dim() != spec.expected_dims:
        return x  # diffusers' plan semantics: an input of another rank is not a sequence to split (e.g. 1-D timestep)
    if state.group.size == 1:
        return x
    rule = getattr(spec, "split_tensor", None)
    return rule(x, state, name) if rule is not None else split_tokens(x, spec, state, name)


def split_tokens(x: torch.Tensor, spec: ContextParallelInput, state: SequenceState, name: str) -> torch.Tensor:
    """A plain `ContextParallelInput`: this rank's chunk along `spec.split_dim`, sized as `torch.tensor_split` sizes
    it. Every spec class below defines `split_tensor` the same way, with its own rule; `sharding.py` calls them."""
    P, rank, size = state.group.size, state.group.rank, x.shape[spec.split_dim]
    if size < P:
        raise ValueError(f"`{name}` has {size} tokens along dim {spec.split_dim}, fewer than the {P} ranks sharing it.")
    state.record_split(size)
    sizes = chunk_sizes(size, P)
    return x.narrow(spec.split_dim, sum(sizes[:rank]), sizes[rank])


@dataclass(frozen=True)
class SplitOrReplicate(ContextParallelInput):
    """Split along `split_dim` when P divides its length; otherwise keep it whole on every rank.

    For joint text tokens: sharded text divides the text MLPs and projections by P too, so it is the fast path; when
    the text length does not divide by P, the text stays whole and attention treats it as a replicated block (sliced
    by head locally, its output rows carried by the output all-to-all).
    """

    def split_tensor(self, x: torch.Tensor, state: SequenceState, name: str) -> torch.Tensor:
        P, size = state.group.size, x.shape[self.split_dim]
        if size % P:
            state.replicated = size
            return x
        state.text = size
        return x.narrow(self.split_dim, state.group.rank * (size // P), size // P)


@dataclass(frozen=True)
class Replicated(ContextParallelInput):
    """Keep whole on every rank at any P, and attend as a replicated block in joint attention.

    For joint text that the model's own code needs whole even when P divides it: HunyuanVideo builds its key-padding
    mask from the whole prompt's valid-token count.
    """

    def split_tensor(self, x: torch.Tensor, state: SequenceState, name: str) -> torch.Tensor:
        state.replicated = x.shape[self.split_dim]
        return x


@dataclass(frozen=True)
class ReplicatedSubset(Replicated):
    """`Replicated` joint text of which each attention call may keep any subset, the same on every rank.

    For processors that drop padded text per sample: Mochi's keeps each sample's valid prompt tokens (from the
    whole, replicated mask), so its joint sequence is `[this rank's tokens, that sample's valid text]`, of a length
    that depends on the data. Each call's replicated block is then the tokens beyond this rank's sharded ones.
    """

    def split_tensor(self, x: torch.Tensor, state: SequenceState, name: str) -> torch.Tensor:
        state.replicated_subset = True
        return super().split_tensor(x, state, name)


@dataclass(frozen=True)
class SplitEach(ContextParallelInput):
    """A list or tuple of tensors, of any length, each split along `split_dim` like a plain `ContextParallelInput`.

    For per-block residuals that are added to the sharded tokens: ControlNet's, one tensor per block it controls,
    each in the image tokens' layout. A plain `ContextParallelInput` leaves a list alone, and a list of specs needs
    its length known in advance.
    """

    def split(self, value, state: SequenceState, name: str):
        if isinstance(value, torch.Tensor):
            return shard_tensor(value, self, state, name)
        if not isinstance(value, (list, tuple)):
            return value
        return type(value)(shard_tensor(v, self, state, f"{name}[{i}]") for i, v in enumerate(value))


@dataclass(frozen=True)
class SplitUnlessBroadcast(ContextParallelInput):
    """Split like a plain `ContextParallelInput`, unless its `split_dim` has length 1: then it broadcasts over the
    sequence (one RoPE row for every token, as HunyuanDiT's forward accepts) and every rank keeps it whole."""

    def split_tensor(self, x: torch.Tensor, state: SequenceState, name: str) -> torch.Tensor:
        return x if x.shape[self.split_dim] == 1 else split_tokens(x, self, state, name)


@dataclass(frozen=True)
class SplitTail(ContextParallelInput):
    """Per-token rows of the *last* tokens of the sequence split earlier in this forward: each rank keeps the rows of
    the tokens it holds (possibly none).

    For conditioning that covers the latent tokens only, after tokens the forward prepends: Stable Audio 3's
    inpainting `local_seq` follows its memory tokens. Paired with `TokenCount` on the count of prepended tokens.
    """

    def split_tensor(self, x: torch.Tensor, state: SequenceState, name: str) -> torch.Tensor:
        total, start, stop = state.held(name)
        size = x.shape[self.split_dim]
        if size > total:
            raise ValueError(f"`{name}` has {size} rows, more than the {total} tokens of the sequence split before it.")
        offset = total - size  # the tokens before the tail, e.g. prepended memory tokens
        first, last = max(start - offset, 0), max(stop - offset, 0)
        return x.narrow(self.split_dim, first, last - first)


@dataclass(frozen=True)
class SplitPerSample(ContextParallelInput):
    """Rows that stack one row per (sample, token) of the sequence split earlier in this forward, sample-major
    (`[B * S, ...]` along `split_dim`): each rank keeps, of every sample, the rows of the tokens it holds.

    For per-token tensors that a forward lays out over batch and tokens together: Latte's temporal blocks attend
    over frames with one batch row per (sample, patch), and their AdaLN timestep is `[B * H * W, 6C]`, one row per
    (sample, patch). A contiguous split of `B * S` rows would give a rank other samples' rows when B > 1.
    """

    def split_tensor(self, x: torch.Tensor, state: SequenceState, name: str) -> torch.Tensor:
        total, start, stop = state.held(name)
        dim = self.split_dim % x.dim()
        if x.shape[dim] % total:
            raise ValueError(f"`{name}` has {x.shape[dim]} rows, not a whole number of samples of {total} tokens.")
        # (B * S, ...) -unflatten-> (B, S, ...) -narrow-> (B, S_LOCAL, ...) -flatten-> (B * S_LOCAL, ...)
        return x.unflatten(dim, (-1, total)).narrow(dim + 1, start, stop - start).flatten(dim, dim + 1)


@dataclass(frozen=True)
class TokenCount:
    """An `int` argument that counts the *first* tokens of the sequence split earlier in this forward, which the module
    treats apart (HunyuanVideo's first-frame tokens under `token_replace`, Stable Audio 3's memory tokens). Each rank
    is passed how many of those tokens it holds, so `x[:, :count]` stays right on its chunk."""

    def split(self, value, state: SequenceState, name: str):
        if not isinstance(value, int):
            return value
        _, start, stop = state.held(name)
        return min(max(value - start, 0), stop - start)  # the counted tokens among this rank's


@dataclass(frozen=True)
class LogBaseOfLength:
    """A number `base` that an attention module uses as `math.log(its query count, base)`, with the count taken from
    its own (sharded) tokens: LuminaNext's proportional attention scales by `sqrt(log(S, base_sequence_length))`.

    Each rank is passed `base ** (ln n / ln S)` instead, for its `n` of the `S` tokens of the sequence split before it,
    so `log(n, that) = log(S, base)`: the single process's scale, up to float64 rounding (about 1e-16 relative).
    """

    def split(self, value, state: SequenceState, name: str):
        if not isinstance(value, (int, float)):
            return value
        total, start, stop = state.held(name)
        if stop - start < 2:
            raise ValueError(f"`{name}`: this rank holds {stop - start} of the {total} tokens; it needs 2 or more.")
        return float(value) ** (math.log(stop - start) / math.log(total))


@dataclass(frozen=True)
class Refused:
    """An argument the plan does not cover: with more than one rank, the hooks raise `ValueError` with `reason` when it
    is given and not None.

    For a mode of the forward that sharded tokens would get wrong without an error: Flux 2's reference-image KV cache
    (`kv_cache_mode`), whose forward cuts the reference tokens out by their whole count.
    """

    reason: str

    def split(self, value, state: SequenceState, name: str):
        if value is not None:
            raise ValueError(f"diffusers_usp: `{name}={value!r}` is not supported under parallelize. {self.reason}")
        return value


class UnsupportedConfig(ValueError):
    """Raised by a plan factory for a model config its plan cannot cover. The message names the config value and
    what works instead; `parallelize` passes it on. (A factory returns `None` instead where the model may run whole:
    a ControlNet.)"""


@dataclass(frozen=True)
class SequencePlan:
    """How one transformer class takes Ulysses sequence parallelism.

    Args:
        split (`dict`):
            diffusers' `_cp_plan` format: module path ("" is the transformer, "*" any child) to a dict of inputs to
            split (`ContextParallelInput`, keyed by forward parameter name or, with `split_output=True`, output
            index; also `TokenCount` and `Refused` for arguments that are not tensors to split), or to the
            `ContextParallelOutput`(s) to gather from its output.
        cross_attention (`tuple[str, ...]`):
            Glob patterns of attention module paths whose keys and values every rank holds whole: cross-attention to
            text, or self-attention of a text-only refiner (its whole sequence is text). They are attended locally,
            with no collective. All other attention modules are sharded self-attention.
        joint_attention (`tuple[str, ...]`, *optional*):
            Glob patterns of the sharded attention modules whose sequence includes the `SplitOrReplicate` tokens
            (text joint with the image). `None` means all of them. When those tokens stay replicated, only these
            modules treat them as a replicated block.
        replicated_front (`bool`):
            Whether joint text tokens precede the sharded tokens in the attention sequence (Flux) or follow them.
        halo_convs (`tuple[str, ...]`):
            Glob patterns of conv modules over the token grid whose input's dim -2 is the axis the tokens are split
            along, in whole rows or frames (`grid_specs.py`): each exchanges a halo of rows with its neighbour ranks
            before it runs (Sana's depthwise conv, Sana-Video's temporal conv).
        two_sequences (`tuple[str, ...]`):
            Glob patterns of attention module paths whose queries come from one sharded sequence and whose keys and
            values come from another, of another length (LTX-2's audio-to-video and video-to-audio attention). Both
            sequences are exchanged in one all-to-all (`two_sequences.py`). Not also in `cross_attention`.
        kv_prefix (`tuple[str, ...]`):
            Glob patterns of sharded attention modules whose queries are this rank's tokens only, while their keys and
            values are `[tokens every rank holds whole, this rank's tokens]` (PRX: image queries against `[text,
            image]` keys). The whole tokens are attended as a replicated K/V prefix (never sent), and a key-padding
            mask over `[prefix, own tokens]` follows both parts.
    """

    split: ContextParallelModelPlan
    cross_attention: tuple[str, ...] = ()
    joint_attention: tuple[str, ...] | None = None
    replicated_front: bool = True
    halo_convs: tuple[str, ...] = ()
    two_sequences: tuple[str, ...] = ()
    kv_prefix: tuple[str, ...] = ()

    def __post_init__(self):
        if not any(
            isinstance(v, (ContextParallelOutput, list, tuple)) for v in self.split.values()
        ):  # a plan that never gathers would return one rank's slice as the model output
            raise ValueError("A SequencePlan must gather its output with a ContextParallelOutput.")

    def is_cross(self, module_path: str) -> bool:
        return any(fnmatchcase(module_path, pattern) for pattern in self.cross_attention)

    def is_two_sequences(self, module_path: str) -> bool:
        return any(fnmatchcase(module_path, pattern) for pattern in self.two_sequences)

    def has_kv_prefix(self, module_path: str) -> bool:
        return any(fnmatchcase(module_path, pattern) for pattern in self.kv_prefix)

    def is_joint(self, module_path: str) -> bool:
        patterns = self.joint_attention if self.joint_attention is not None else ("*",)
        return any(fnmatchcase(module_path, pattern) for pattern in patterns)
