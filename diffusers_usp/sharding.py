"""Split the sequence once at a transformer's entry and gather it once at its exit, as a `SequencePlan` says.

Plans use diffusers' `_cp_plan` format and are applied with diffusers' own hook mechanism (`ModelHook`,
`HookRegistry`), so they compose with its other hooks (caching, offloading) the way its native context parallelism
does.
"""

from __future__ import annotations

import inspect

import torch
from diffusers.hooks import HookRegistry, ModelHook

from .comm import all_gather_dim
from .compat import ContextParallelOutput, native_parallelism
from .grid import apply_halo_convs, remove_halo_convs
from .plans import SequencePlan
from .plans.base import shard_tensor
from .sequence import SequenceState

_SPLIT_HOOK = "usp_split---{}"
_GATHER_HOOK = "usp_gather---{}"


def _gather(x: torch.Tensor, spec: ContextParallelOutput, state: SequenceState) -> torch.Tensor:
    group = state.group
    if group.size == 1:
        return x
    sizes = state.sizes(x.shape[spec.gather_dim])  # every rank's rows, when they differ
    if sizes is not None and x.shape[spec.gather_dim] != sizes[group.rank]:
        raise ValueError(f"Cannot gather {x.shape[spec.gather_dim]} rows here: this rank holds {sizes[group.rank]}.")
    if state.inputs is not None:  # carries this forward's input checksums (inputs.py)
        return state.inputs.gather(x, spec.gather_dim, sizes)
    return all_gather_dim(x, spec.gather_dim, group, sizes)


class SplitHook(ModelHook):
    """Splits the named inputs (or, with `split_output`, the indexed outputs) of one module along the sequence."""

    def __init__(self, specs: dict, state: SequenceState, root: bool) -> None:
        super().__init__()
        self.specs = specs
        self.state = state
        self.root = root
        self.params: list[str] = []
        self.var_keyword = False

    def initialize_hook(self, module):
        parameters = inspect.signature(type(module).forward).parameters
        self.params = list(parameters)[1:]
        self.var_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        return module

    def pre_forward(self, module, *args, **kwargs):
        state = self.state
        if self.root:
            if native_parallelism(module) is not None:  # the same on every rank: all raise
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
            if isinstance(name, tuple):  # several arguments at once: a spec with `rewrite` (`plans.joint_specs`)
                if state.group.size > 1:
                    self._rewrite(name, spec, args, kwargs)
                continue
            if name in kwargs:
                kwargs[name] = self._split(kwargs[name], spec, name)
            elif name in self.params:
                index = self.params.index(name)
                if index < len(args):
                    args[index] = self._split(args[index], spec, name)
            elif not self.var_keyword:  # a `**kwargs` entry may be absent (LuminaNext's base length); a name not
                raise ValueError(  # in the signature of a forward without one is a plan bug
                    f"Sequence plan names input `{name}`, but {type(module).__name__}.forward has no such parameter."
                )
        return tuple(args), kwargs

    def _rewrite(self, names: tuple[str, ...], spec, args: list, kwargs: dict) -> None:
        """Pass the named arguments (positional or keyword, None when not given) to `spec.rewrite` together, and put
        back what it returns, in place."""
        where = {n: self.params.index(n) for n in names if n not in kwargs and n in self.params}
        values = {n: args[where[n]] if where.get(n, len(args)) < len(args) else kwargs.get(n) for n in names}
        for n, value in spec.rewrite(values, self.state).items():
            if where.get(n, len(args)) < len(args):
                args[where[n]] = value
            else:
                kwargs[n] = value

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
        """`value` split by `spec`: a tensor by a tensor spec; a list or tuple element by element by a list or tuple
        of specs; a dict key by key by a dict of specs (keys it lacks stay whole); anything else by the spec's own
        `split` rule (`SplitEach`, `TokenCount`, `Refused`)."""
        if self.state.group.size == 1:
            return value
        if isinstance(spec, dict):  # a dict of tensors (AnyFlow's {"query", "key"} RoPE tables): a spec per key
            if not isinstance(value, dict):
                return value
            return {k: self._split(v, spec[k], f"{name}[{k!r}]") if k in spec else v for k, v in value.items()}
        if isinstance(spec, (list, tuple)):
            if not isinstance(value, (list, tuple)):
                return value
            if len(value) != len(spec):
                raise ValueError(f"`{name}` has {len(value)} elements but its plan entry has {len(spec)}.")
            split = [
                self._split(v, s, f"{name}[{i}]") if s is not None else v for i, (v, s) in enumerate(zip(value, spec))
            ]
            return type(value)(split)
        rule = getattr(spec, "split", None)
        if rule is not None:
            return rule(value, self.state, name)
        if isinstance(value, torch.Tensor):
            return shard_tensor(value, spec, self.state, name)
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
    apply_halo_convs(transformer, plan.halo_convs, state)


def remove_sequence_sharding(transformer: torch.nn.Module, plan: SequencePlan) -> None:
    """Remove the hooks that `apply_sequence_sharding` registered."""
    entries = dict(plan.split)
    entries.setdefault("", {})
    for path, entry in entries.items():
        template = _SPLIT_HOOK if isinstance(entry, dict) else _GATHER_HOOK
        for module in _modules(transformer, path):
            HookRegistry.check_if_exists_or_initialize(module).remove_hook(template.format(path), recurse=False)
    remove_halo_convs(transformer, plan.halo_convs)
