"""Split the sequence once at a transformer's entry and gather it once at its exit, as a `SequencePlan` says.

Plans use diffusers' `_cp_plan` format and are applied with diffusers' own hook mechanism (`ModelHook`,
`HookRegistry`), so they compose with its other hooks (caching, offloading) the way its native context parallelism
does.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch
from diffusers.hooks import HookRegistry, ModelHook
from diffusers.models._modeling_parallel import ContextParallelInput, ContextParallelOutput

from .comm import all_gather_dim, chunk_sizes
from .inputs import InputCheck, check_same_inputs, checksums
from .plans import (
    Replicated,
    SequencePlan,
    SplitEach,
    SplitOrReplicate,
    SplitTail,
    SplitUnlessBroadcast,
    TokenCount,
)
from .plans.base import Refused
from .state import UlyssesGroup

_SPLIT_HOOK = "usp_split---{}"
_GATHER_HOOK = "usp_gather---{}"


@dataclass
class SequenceState:
    """What one parallelized transformer's attention processors need to know about the current forward.

    Args:
        group (`UlyssesGroup`): the ranks sharing the sequence, which hold its chunks in rank order.
        replicated_front (`bool`): whether replicated joint tokens (text) come before the sharded ones.
        check_inputs (`bool`): compare the inputs across ranks on every forward (`inputs.InputCheck`).
        ring (`UlyssesGroup`, *optional*): with ring attention, this rank's ring group (the ranks holding the same
            heads of different blocks); `group` is then the ring and Ulysses ranks flattened, ring-major. `None`:
            no ring, and `group` is the Ulysses group.
        ulysses (`UlyssesGroup`, *optional*): with ring attention, this rank's Ulysses group.

    Reset at every forward, from the shapes the split hooks see (the same on every rank, so no sizes are exchanged):
    `replicated`, the joint tokens every rank holds whole (text whose count P does not divide); `text`, the joint
    tokens that were split instead; `lengths`, the lengths of the sequences that were split.
    """

    group: UlyssesGroup
    replicated_front: bool = True
    check_inputs: bool = True
    ring: UlyssesGroup | None = None
    ulysses: UlyssesGroup | None = None
    inputs: InputCheck | None = field(default=None, repr=False)
    replicated: int = 0
    text: int = 0
    lengths: set[int] = field(default_factory=set)

    def __post_init__(self):
        if (self.ring is None) != (self.ulysses is None):
            raise ValueError("SequenceState takes `ring` and `ulysses` together, or neither.")
        if self.ring is not None and self.ring.size * self.ulysses.size != self.group.size:
            raise ValueError(
                f"A ring of {self.ring.size} Ulysses groups of {self.ulysses.size} ranks does not make the "
                f"{self.group.size} ranks of the sequence group."
            )
        if self.check_inputs and self.group.size > 1:
            self.inputs = InputCheck(self.group)

    def reset(self) -> None:
        self.replicated = self.text = 0
        self.lengths.clear()

    @property
    def uneven(self) -> int | None:
        """The length of the split sequence when P does not divide it (its ranks then hold `chunk_sizes` tokens)."""
        return next((n for n in self.lengths if n % self.group.size), None)

    def seq_lens(self, joint: bool) -> tuple[int, ...] | None:
        """Every rank's count of sharded tokens in one attention call; `None` when all ranks hold the same count."""
        tokens = self.uneven
        if tokens is None:
            return None
        text = self.text // self.group.size if joint else 0
        return tuple(n + text for n in chunk_sizes(tokens, self.group.size))


def _shard(x: torch.Tensor, spec: ContextParallelInput, state: SequenceState, name: str) -> torch.Tensor:
    if spec.expected_dims is not None and x.dim() != spec.expected_dims:
        return x  # diffusers' plan semantics: an input of another rank is not a sequence to split (e.g. 1-D timestep)
    P, rank, size = state.group.size, state.group.rank, x.shape[spec.split_dim]
    if P == 1:
        return x
    if isinstance(spec, Replicated):
        state.replicated = size
        return x
    if isinstance(spec, SplitOrReplicate):
        if size % P:
            state.replicated = size
            return x
        state.text = size
        return x.narrow(spec.split_dim, rank * (size // P), size // P)
    if isinstance(spec, SplitUnlessBroadcast) and size == 1:
        return x  # one row for every token (a broadcast RoPE table): each rank's tokens need all of it
    if isinstance(spec, SplitTail):
        total, start, stop = _held(state, name)
        if size > total:
            raise ValueError(f"`{name}` has {size} rows, more than the {total} tokens of the sequence split before it.")
        offset = total - size  # the tokens before the tail, e.g. prepended memory tokens
        first, last = max(start - offset, 0), max(stop - offset, 0)
        return x.narrow(spec.split_dim, first, last - first)
    if size < P:
        raise ValueError(f"`{name}` has {size} tokens along dim {spec.split_dim}, fewer than the {P} ranks sharing it.")
    state.lengths.add(size)
    if len(state.lengths) > 1 and state.uneven is not None:
        raise ValueError(
            f"This forward splits sequences of lengths {sorted(state.lengths)} over {P} ranks, and {state.uneven} "
            f"does not divide by {P}. Several sequences can only be split evenly: choose sizes that {P} divides."
        )
    sizes = chunk_sizes(size, P)
    return x.narrow(spec.split_dim, sum(sizes[:rank]), sizes[rank])


def _held(state: SequenceState, name: str) -> tuple[int, int, int]:
    """`(total, start, stop)`: the length of the sequence split so far in this forward, and the tokens this rank
    holds of it."""
    if len(state.lengths) != 1:
        raise ValueError(
            f"`{name}` refers to the sequence split before it in this forward, but {len(state.lengths)} sequences "
            f"were split so far ({sorted(state.lengths)}): its plan must split exactly one sequence before it."
        )
    (total,) = state.lengths
    sizes = chunk_sizes(total, state.group.size)
    start = sum(sizes[: state.group.rank])
    return total, start, start + sizes[state.group.rank]


def _gather(x: torch.Tensor, spec: ContextParallelOutput, state: SequenceState) -> torch.Tensor:
    group = state.group
    if group.size == 1:
        return x
    tokens = state.uneven
    sizes = chunk_sizes(tokens, group.size) if tokens is not None else None
    if sizes is not None and x.shape[spec.gather_dim] != sizes[group.rank]:
        raise ValueError(f"Cannot gather {x.shape[spec.gather_dim]} rows here: this rank holds {sizes[group.rank]}.")
    if state.inputs is not None:  # carries this forward's input checksums (inputs.py)
        return state.inputs.gather(x, spec.gather_dim, sizes)
    return all_gather_dim(x, spec.gather_dim, group, sizes)


def _check_same_inputs(tensors: list[torch.Tensor], group: UlyssesGroup) -> None:
    """One blocking all-reduce of a checksum per tensor (CFG parallel's first-call check across its two groups)."""
    check_same_inputs(checksums(tensors), group)


class SplitHook(ModelHook):
    """Splits the named inputs (or, with `split_output`, the indexed outputs) of one module along the sequence."""

    def __init__(self, specs: dict, state: SequenceState, root: bool) -> None:
        super().__init__()
        self.specs = specs
        self.state = state
        self.root = root
        self.params: list[str] = []

    def initialize_hook(self, module):
        self.params = list(inspect.signature(type(module).forward).parameters)[1:]
        return module

    def pre_forward(self, module, *args, **kwargs):
        state = self.state
        if self.root:
            if getattr(module, "_parallel_config", None) is not None:  # the same on every rank: all raise
                raise RuntimeError(
                    f"{type(module).__name__} was given diffusers' own parallelism (`enable_parallelism`) after "
                    "diffusers_usp.parallelize: its hooks would split the sequence a second time. Use one or the "
                    "other: load the model afresh, or call diffusers_usp.remove_parallelism first."
                )
            state.reset()
            if state.inputs is not None:  # compares the last forward's inputs, checksums this one's (inputs.py)
                state.inputs.begin(self.params, args, kwargs)
        args = list(args)
        for name, spec in self.specs.items():
            if isinstance(name, int):
                continue
            if name in kwargs:
                kwargs[name] = self._split(kwargs[name], spec, name)
            else:
                index = self.params.index(name)
                if index < len(args):
                    args[index] = self._split(args[index], spec, name)
        return tuple(args), kwargs

    def post_forward(self, module, output):
        outputs = [i for i in self.specs if isinstance(i, int)]
        if not outputs:
            return output
        single = isinstance(output, torch.Tensor)  # output index 0 is then the tensor itself, not its first row
        output = [output] if single else list(output)
        for i in outputs:
            output[i] = self._split(output[i], self.specs[i], f"{type(module).__name__} output {i}")
        return output[0] if single else tuple(output)

    def _split(self, value, spec, name: str):
        """A tensor by `spec`; a list or tuple of tensors element by element, by a list or tuple of specs or by one
        `SplitEach`; an `int` counting leading tokens by `TokenCount`; `Refused` raises on any value but None."""
        if isinstance(spec, Refused):
            if value is not None and self.state.group.size > 1:
                raise ValueError(f"diffusers_usp: `{name}={value!r}` is not supported under parallelize. {spec.reason}")
            return value
        if isinstance(spec, TokenCount):
            if not isinstance(value, int) or self.state.group.size == 1:
                return value
            _, start, stop = _held(self.state, name)
            return min(max(value - start, 0), stop - start)  # the counted tokens among this rank's
        if isinstance(value, torch.Tensor):
            return _shard(value, spec, self.state, name)
        if isinstance(value, (list, tuple)) and isinstance(spec, SplitEach):
            return type(value)(_shard(v, spec, self.state, f"{name}[{i}]") for i, v in enumerate(value))
        if isinstance(value, (list, tuple)) and isinstance(spec, (list, tuple)):
            if len(value) != len(spec):
                raise ValueError(f"`{name}` has {len(value)} elements but its plan entry has {len(spec)}.")
            split = [
                self._split(v, s, f"{name}[{i}]") if s is not None else v for i, (v, s) in enumerate(zip(value, spec))
            ]
            return type(value)(split)
        return value  # None, or not a sequence tensor (diffusers' plans skip these too)


class GatherHook(ModelHook):
    """Gathers the sequence of one module's output(s) from every rank."""

    def __init__(self, specs: list[ContextParallelOutput | None], state: SequenceState) -> None:
        super().__init__()
        self.specs = specs
        self.state = state

    def post_forward(self, module, output):
        single = isinstance(output, torch.Tensor)
        output = [output] if single else list(output)
        for i, spec in enumerate(self.specs):
            if spec is not None:
                output[i] = _gather(output[i], spec, self.state)
        return output[0] if single else tuple(output)


def _modules(root: torch.nn.Module, path: str) -> list[torch.nn.Module]:
    """The modules a plan key names: "" is the root, "blocks.0" one block, "blocks.-1" the last one, "blocks.*.attn2"
    every block's attn2."""
    found = [root]
    for atom in path.split(".") if path else []:
        nxt = []
        for m in found:
            if atom == "*":
                nxt.extend(m.children())
            elif isinstance(m, torch.nn.ModuleList) and atom.lstrip("-").isdigit():
                nxt.append(m[int(atom)])  # "blocks.-1": the last block, whatever the config's depth
            elif hasattr(m, atom):
                nxt.append(getattr(m, atom))
            else:
                raise ValueError(f"Sequence plan names `{path}`, but {type(m).__name__} has no `{atom}`.")
        found = nxt
    return found


def apply_sequence_sharding(transformer: torch.nn.Module, plan: SequencePlan, state: SequenceState) -> None:
    """Register the split and gather hooks of `plan` on `transformer`."""
    entries = dict(plan.split)
    entries.setdefault("", {})  # the root hook resets per-forward state and checks inputs, so it always exists
    for path, entry in entries.items():
        for module in _modules(transformer, path):
            registry = HookRegistry.check_if_exists_or_initialize(module)
            if isinstance(entry, dict):
                registry.register_hook(SplitHook(entry, state, root=path == ""), _SPLIT_HOOK.format(path))
            else:
                specs = [entry] if isinstance(entry, ContextParallelOutput) else list(entry)
                registry.register_hook(GatherHook(specs, state), _GATHER_HOOK.format(path))


def remove_sequence_sharding(transformer: torch.nn.Module, plan: SequencePlan) -> None:
    """Remove the hooks that `apply_sequence_sharding` registered."""
    entries = dict(plan.split)
    entries.setdefault("", {})
    for path, entry in entries.items():
        template = _SPLIT_HOOK if isinstance(entry, dict) else _GATHER_HOOK
        for module in _modules(transformer, path):
            HookRegistry.check_if_exists_or_initialize(module).remove_hook(template.format(path), recurse=False)
