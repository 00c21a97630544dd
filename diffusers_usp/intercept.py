"""How a wrapped diffusers processor's attention kernel call reaches USP: its own `__call__` code, run with two names
rebound in a private copy of its globals.

- `dispatch_attention_fn`: the kernel entry of current processors (BSHD layout);
- `F` (`torch.nn.functional`), whose `scaled_dot_product_attention` older processors (SD3's, CogVideoX's, PixArt's)
  call in BHSD layout.

The copy is made per `USPProcessor` instance and per processor class it wraps, when it is built: it maps the names to
that instance's kernel entries, so it cannot be shared by class. A call costs one extra Python frame, and nothing
outside USP processors' calls changes, since the module's real globals are untouched. `torch.compile(fullgraph=True)`
traces the rebound function.
"""

from __future__ import annotations

import functools
import inspect
import sys
import types
from collections.abc import Callable
from enum import Enum

import torch.nn.functional as F

DISPATCH = "dispatch_attention_fn"


def _names_used(code: types.CodeType) -> set[str]:
    """Global names read by `code` and by any function nested in it."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names_used(const)
    return names


def functional_with_sdpa(sdpa: Callable) -> types.ModuleType:
    """A copy of `torch.nn.functional` whose `scaled_dot_product_attention` is `sdpa`."""
    functional = types.ModuleType(F.__name__)
    functional.__dict__.update(F.__dict__)
    functional.scaled_dot_product_attention = sdpa
    return functional


def rebind(fn: types.FunctionType, dispatch: Callable, functional: types.ModuleType) -> types.FunctionType:
    """`fn` with `dispatch_attention_fn` rebound to `dispatch` and `F` to `functional`, in a copy of its globals.

    Raises `TypeError` if `fn` calls neither kernel entry itself (then nothing would reach USP).
    """
    used = _names_used(fn.__code__)
    scope = dict(fn.__globals__)
    # Without `__name__`, Dynamo guards these globals through this dict itself. With it, Dynamo assumes the function
    # reads its module's real globals and guards on `transformer_flux.dispatch_attention_fn`, which is not what runs.
    del scope["__name__"]
    routed = False
    if DISPATCH in used and DISPATCH in scope:
        scope[DISPATCH] = dispatch
        routed = True
    if "scaled_dot_product_attention" in used:  # not any `F.*` use: linear attention calls F.relu, not SDPA
        for name in used:
            if scope.get(name) is F:
                scope[name] = functional
                routed = True
    if not routed:
        raise TypeError(
            f"{fn.__qualname__} calls neither `dispatch_attention_fn` nor `F.scaled_dot_product_attention`, so "
            "USPProcessor cannot reach its attention kernel."
        )
    rebound = types.FunctionType(fn.__code__, scope, fn.__name__, fn.__defaults__, fn.__closure__)
    rebound.__kwdefaults__ = fn.__kwdefaults__
    return rebound


def context_index(cls: type) -> int | None:
    """Where `cls.__call__(self, attn, ...)` takes `encoder_hidden_states` among the arguments after `attn`:
    its position, `sys.maxsize` when it is keyword-only, `None` when it takes none (it has no context to miss)."""
    params = list(inspect.signature(cls.__call__).parameters.values())[2:]
    for at, param in enumerate(params):
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            break
        if param.name == "encoder_hidden_states":
            return at if param.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD else sys.maxsize
    return next((sys.maxsize for p in params if p.name == "encoder_hidden_states"), None)


def qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


@functools.cache
def with_signature_of(base: type, inner_cls: type) -> type:
    """A subclass of `base` whose `__call__` shows `inner_cls.__call__`'s parameters.

    diffusers' attention modules keep only the keyword arguments that `inspect.signature(processor.__call__)` names
    (CogVideoX passes its rotary embedding that way), so a `(attn, *args, **kwargs)` signature would silently drop
    them. With the wrapped processor's own signature, a module drops exactly what it would drop for that processor.
    A class attribute, not a per-instance one: Dynamo traces `type(obj).__call__` and refuses instance-level
    `__call__` overrides.
    """

    def __call__(self, attn, *args, **kwargs):
        return base.__call__(self, attn, *args, **kwargs)

    __call__.__signature__ = inspect.signature(inner_cls.__call__)
    return type(base.__name__, (base,), {"__call__": __call__, "__module__": base.__module__})


# Per processor class: what its kernel calls mean beyond the first, and when it may skip its kernel by design.


class IPAdapterCall(Enum):
    """What an IP-Adapter processor's kernel calls after its first attend. Their image-prompt tokens come from the
    image encoder, not from the split sequence, so every rank holds them whole."""

    CROSS = "keys and values are the image-prompt tokens alone: cross-attention, no collective"
    KV_SUFFIX = (
        "keys and values are the queries' own tokens, then the image-prompt tokens: sharded self-attention with the "
        "image-prompt tokens as a replicated K/V block (no mask, so their place among the keys is immaterial)"
    )


# Decided by class and call order, never by token counts: a Flux rank's 4 image tokens at P=4 may meet 4 image-prompt
# tokens.
IP_ADAPTER_LATER_CALLS = {
    "diffusers.models.transformers.transformer_flux.FluxIPAdapterAttnProcessor": IPAdapterCall.CROSS,
    "diffusers.models.attention_processor.SD3IPAdapterJointAttnProcessor2_0": IPAdapterCall.KV_SUFFIX,
}

# Processors that legitimately return without attending when one of their arguments says so, by class: the argument's
# name. LTX-2's spatio-temporal guidance pass (`all_perturbed`) returns the value projection, per token, exact on any
# rank's tokens.
KERNEL_SKIPPED_WHEN = {
    "diffusers.models.transformers.transformer_ltx2.LTX2PerturbedAttnProcessor": "all_perturbed",
}
