"""USPProcessor: wraps a model's own diffusers attention processor and routes only its attention kernel to USP.

The wrapped processor keeps doing what diffusers wrote it to do: projections, norms, RoPE, output projection. Only its
call to the kernel changes. We run the processor's own `__call__` code with two names rebound in a private copy of
its globals: `dispatch_attention_fn` (the kernel entry of current processors, BSHD layout) and `F`
(`torch.nn.functional`, whose `scaled_dot_product_attention` older processors such as SD3's, CogVideoX's and
PixArt's call in BHSD layout). The copy is made per `USPProcessor` instance and per processor class it wraps, when it
is built (`parallelize` builds one instance per attention module): it maps the names to this instance's own kernel
entries, which is why it cannot be shared by class. Calls cost one extra Python frame, and nothing outside USP
processors' calls changes, since the module's real globals are untouched.

Only kernel calls written in the processor's `__call__` are rebound. A sharded or local module whose processor
attends through a helper function instead raises after the call (a per-call count of routed kernel calls), rather
than return attention over this rank's tokens only.
"""

from __future__ import annotations

import functools
import inspect
import sys
import types
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.attention_dispatch import dispatch_attention_fn

from .attention import head_parallel_attention, local_attention, ulysses_attention
from .ring import usp_ring_attention
from .role import AttentionRole
from .state import UlyssesGroup, ulysses_group

_DISPATCH = "dispatch_attention_fn"

# Processors whose kernel calls after the first attend the module's own image queries to IP-Adapter image-prompt
# tokens, which every rank holds whole (they come from the image encoder, not from the split sequence). Decided by
# class and call order, never by token counts: a Flux rank's 4 image tokens at P=4 may meet 4 image-prompt tokens.
# - "local": the keys and values are the image-prompt tokens alone, attended locally with no collective.
# - "suffix": the keys and values are `[the queries' own tokens, the image-prompt tokens]`: sharded self-attention
#   with the image-prompt tokens as a replicated K/V block (no mask, so their place among the keys is immaterial).
_LATER_CALLS = {
    "diffusers.models.transformers.transformer_flux.FluxIPAdapterAttnProcessor": "local",
    "diffusers.models.attention_processor.SD3IPAdapterJointAttnProcessor2_0": "suffix",
}


def _names_used(code: types.CodeType) -> set[str]:
    """Global names read by `code` and by any function nested in it."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names_used(const)
    return names


class USPProcessor:
    """Ulysses sequence-parallel attention for any diffusers attention module.

    Two ways to install it:

    - `diffusers_usp.parallelize(pipe)` wraps every attention module's own processor, with the module's role
      (sharded or local), and shards the sequence at the transformer's entry and exit. Each attention then makes one
      all-to-all in and one out (none for cross-attention to replicated text), and every other layer works on 1/P of
      the tokens. `diffusers_usp.remove_parallelism(pipe)` puts the original processors back.
    - `transformer.set_attn_processor(USPProcessor())` alone leaves the sequence whole on every rank (the `"heads"`
      role). It is still exact: each rank attends its own heads and one all-gather completes them. It warns once,
      since only attention is split; use `parallelize` for the full speed-up.

    With one process (no launcher, or world size 1) it computes exactly what the wrapped processor computes.

    Args:
        processor (`AttentionProcessor`, *optional*):
            The processor to wrap. Defaults to each attention module's `_default_processor_cls` (heads role only).
        group (`torch.distributed.ProcessGroup`, *optional*):
            The ranks that share one sequence, for the heads role. Defaults to the default process group.
        role (`AttentionRole`, *optional*):
            What this module does: heads only (the default), sharded or local. A sharded or local role wraps one
            module's `processor` and takes its group from the role's `sequence`.
    """

    def __new__(
        cls,
        processor: Any | None = None,
        *,
        group: torch.distributed.ProcessGroup | None = None,
        role: AttentionRole | None = None,
    ):
        if cls is USPProcessor and processor is not None:
            inner = processor.processor if isinstance(processor, USPProcessor) else processor
            if inner is not None:
                cls = _with_signature_of(type(inner))
        return super().__new__(cls)

    def __init__(
        self,
        processor: Any | None = None,
        *,
        group: torch.distributed.ProcessGroup | None = None,
        role: AttentionRole | None = None,
    ):
        if isinstance(processor, USPProcessor):
            processor = processor.processor
        role = AttentionRole() if role is None else role
        if role.mode != "heads" and processor is None:
            raise ValueError(f"A {role.mode} USPProcessor wraps one module's processor: pass it (parallelize does).")
        if role.mode != "heads" and group is not None:
            raise ValueError("Pass `group` for the heads role only: a sharded or local role uses its sequence's group.")
        self.processor = processor
        self.role = role
        self._group_arg = group
        self._group: UlyssesGroup | None = role.sequence.group if role.sequence is not None else None
        self._heads = role.mode == "heads"
        self._local = role.mode == "local"
        # Per call of a sharded or local module on several ranks: the kernel calls routed so far (none at the end
        # means the processor attended through code we cannot reach), and whether a local module was called without
        # its context. Plain attributes: Dynamo traces their updates as side effects, with no graph break.
        self._counted = not self._heads and self._group.size > 1
        self._kernel_calls = 0
        self._self_attends = False
        self._context_at = _context_index(type(processor)) if role.sharded_queries else None
        self._later = _LATER_CALLS.get(_qualname(type(processor))) if role.mode == "sharded" else None
        self._warned = False
        self._rebound: dict[type, types.FunctionType] = {}
        self._functional = types.ModuleType(F.__name__)
        self._functional.__dict__.update(F.__dict__)
        self._functional.scaled_dot_product_attention = self._sdpa
        if processor is not None:
            # Now, not on the first call: building a function is not something torch.compile can trace.
            self._rebound[type(processor)] = self._rebind(type(processor).__call__)

    def __repr__(self) -> str:
        inner = type(self.processor).__name__ if self.processor is not None else "default"
        return f"USPProcessor({inner}, {self.role.mode})"

    # diffusers' `set_attention_backend` sets `_attention_backend` on every processor that has one. The wrapped
    # processor makes the kernel call (Ulysses runs the model's own kernel between its two all-to-alls), so it is the
    # one that must get it; with none wrapped, or one without backends, `hasattr` is False, as on that processor.
    @property
    def _attention_backend(self):
        return self.processor._attention_backend

    @_attention_backend.setter
    def _attention_backend(self, backend) -> None:
        self.processor._attention_backend = backend

    # -- the wrapped processor --------------------------------------------------------------------------------------

    def __call__(self, attn: torch.nn.Module, *args, **kwargs):
        inner = self.processor if self.processor is not None else self._default_for(attn)
        fn = self._rebound.get(type(inner))
        if fn is None:
            fn = self._rebound[type(inner)] = self._rebind(type(inner).__call__)
        if not self._counted:
            return fn(inner, attn, *args, **kwargs)
        self._kernel_calls = 0
        if self._context_at is not None:
            at = self._context_at
            self._self_attends = (args[at] if at < len(args) else kwargs.get("encoder_hidden_states")) is None
        out = fn(inner, attn, *args, **kwargs)
        if not self._kernel_calls:
            raise RuntimeError(
                f"{self.role}: the attention module returned without calling its attention kernel through "
                f"USPProcessor. Its processor, {type(inner).__name__}, attended through code outside its own "
                "`__call__` (a helper function), which sees only this rank's tokens, so its output would be wrong. "
                "This input or mode of the model is not supported under diffusers_usp.parallelize: run it without "
                "(diffusers_usp.remove_parallelism), or with the model's default mode."
            )
        return out

    def _default_for(self, attn: torch.nn.Module):
        inner = getattr(attn, "_usp_default_processor", None)
        if inner is None:
            cls = getattr(attn, "_default_processor_cls", None)
            if cls is None:
                raise TypeError(
                    f"USPProcessor() cannot tell which processor {type(attn).__name__} normally uses. Wrap it "
                    "explicitly, USPProcessor(<its processor>), or call diffusers_usp.parallelize(model), which "
                    "wraps each module's own processor."
                )
            inner = cls()
            attn._usp_default_processor = inner
        return inner

    def _rebind(self, fn: types.FunctionType) -> types.FunctionType:
        used = _names_used(fn.__code__)
        scope = dict(fn.__globals__)
        # Without `__name__`, Dynamo guards these globals through this dict itself. With it, Dynamo assumes the
        # function reads its module's real globals and guards on `transformer_flux.dispatch_attention_fn`, which
        # is not what runs.
        del scope["__name__"]
        routed = False
        if _DISPATCH in used and _DISPATCH in scope:
            scope[_DISPATCH] = self._dispatch
            routed = True
        if "scaled_dot_product_attention" in used:  # not any `F.*` use: linear attention calls F.relu, not SDPA
            for name in used:
                if scope.get(name) is F:
                    scope[name] = self._functional
                    routed = True
        if not routed:
            raise TypeError(
                f"{fn.__qualname__} calls neither `dispatch_attention_fn` nor `F.scaled_dot_product_attention`, so "
                "USPProcessor cannot reach its attention kernel."
            )
        rebound = types.FunctionType(fn.__code__, scope, fn.__name__, fn.__defaults__, fn.__closure__)
        rebound.__kwdefaults__ = fn.__kwdefaults__
        return rebound

    # -- the two kernel entry points --------------------------------------------------------------------------------

    def _dispatch(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        dropout_p: float = 0.0,
        is_causal: bool = False,
        scale: float | None = None,
        enable_gqa: bool = False,
        attention_kwargs: dict[str, Any] | None = None,
        *,
        backend=None,
        parallel_config=None,
    ) -> torch.Tensor:
        """Stands in for diffusers' `dispatch_attention_fn` (BSHD) inside the wrapped processor."""

        def kernel(q, k, v, mask):
            return dispatch_attention_fn(
                q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale,
                enable_gqa=enable_gqa or q.shape[2] != k.shape[2], attention_kwargs=attention_kwargs, backend=backend,
            )  # fmt: skip

        return self._attend(query, key, value, kernel, attn_mask, is_causal, scale, dropout_p)

    def _sdpa(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        dropout_p: float = 0.0,
        is_causal: bool = False,
        scale: float | None = None,
        enable_gqa: bool = False,
    ) -> torch.Tensor:
        """Stands in for `F.scaled_dot_product_attention` (BHSD) inside the wrapped processor."""

        def kernel(q, k, v, mask):
            # (B, S, H, D) -transpose-> (B, H, S, D) views; SDPA takes strided inputs
            out = F.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask, dropout_p=dropout_p,
                is_causal=is_causal, scale=scale, enable_gqa=enable_gqa or q.shape[2] != k.shape[2],
            )  # fmt: skip
            return out.transpose(1, 2)

        query, key, value = query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2)
        out = self._attend(query, key, value, kernel, attn_mask, is_causal, scale, dropout_p)
        return out.transpose(1, 2)

    # -- routing ----------------------------------------------------------------------------------------------------

    def _attend(self, query, key, value, kernel, attn_mask, is_causal, scale, dropout_p) -> torch.Tensor:
        group = self._group
        if group is None:
            group = self._group = ulysses_group(self._group_arg)
        if group.size == 1:
            return kernel(query, key, value, attn_mask)
        if self._heads:
            self._warn_heads_only()
            return head_parallel_attention(query, key, value, kernel, group, attn_mask)
        index = self._kernel_calls
        self._kernel_calls = index + 1
        if index and self._later == "local":
            return local_attention(query, key, value, kernel, attn_mask)
        if index and self._later == "suffix":
            if attn_mask is not None:
                raise NotImplementedError(f"{self.role}: an IP-Adapter attention with a mask is not supported.")
            q_tokens = query.shape[1]  # the image keys are the queries' own tokens; the image-prompt ones follow
            prompt = (key[:, q_tokens:], value[:, q_tokens:])
            key, value = key[:, :q_tokens], value[:, :q_tokens]
            return self._sharded(query, key, value, kernel, None, is_causal, scale, dropout_p, False, prompt)
        if self._local and not self._self_attends:
            return local_attention(query, key, value, kernel, attn_mask)
        # A local module called without its context self-attends its own (sharded) tokens, without the joint text.
        joint = self.role.joint and not self._local
        return self._sharded(query, key, value, kernel, attn_mask, is_causal, scale, dropout_p, joint)

    def _sharded(
        self, query, key, value, kernel, attn_mask, is_causal, scale, dropout_p, joint, kv_prefix=None
    ) -> torch.Tensor:
        if is_causal:
            raise NotImplementedError(
                f"{self.role}: causal attention over a sharded sequence is not supported: the all-to-all gathers "
                "tokens in rank order, which for joint text and image is not the sequence order a causal mask refers "
                "to."
            )
        if key.shape[1] != query.shape[1]:
            raise ValueError(
                f"{self.role}: a sharded self-attention got {query.shape[1]} query tokens but {key.shape[1]} key "
                "tokens. If this module attends to replicated tokens (cross-attention), its sequence plan must list "
                "it in `local_attention`."
            )
        seq = self.role.sequence
        group = seq.group
        seq_lens = seq.seq_lens(joint)
        replicated = seq.replicated if joint else 0
        if seq_lens is not None and seq_lens[group.rank] != query.shape[1] - replicated:
            raise ValueError(
                f"{self.role}: {query.shape[1] - replicated} sharded tokens reach this attention, but the uneven "
                f"split gave this rank {seq_lens[group.rank]}: its sequence is not the one that was split unevenly. "
                f"Choose token counts that {group.size} divides for this model, or mark the module in its plan."
            )
        key_mask = None if attn_mask is None else _key_mask(attn_mask, query.shape[0], key.shape[1])
        if seq.ring is not None and seq.ring.size > 1:
            if dropout_p:
                raise NotImplementedError(f"{self.role}: ring attention does not apply attention dropout (training).")
            # Ring steps attend with a kernel that returns the log-sum-exp (`ring.attention_lse`), not with the
            # wrapped processor's kernel: the exact merge of blocks needs it, and diffusers' backends do not return it.
            return usp_ring_attention(
                query, key, value, seq.ulysses, seq.ring,
                replicated=replicated, replicated_front=seq.replicated_front, kv_prefix=kv_prefix, seq_lens=seq_lens,
                key_mask=key_mask, scale=scale,
            )  # fmt: skip
        return ulysses_attention(
            query, key, value, kernel, group,
            replicated=replicated, replicated_front=seq.replicated_front, kv_prefix=kv_prefix, seq_lens=seq_lens,
            key_mask=key_mask,
        )  # fmt: skip

    def _warn_heads_only(self) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(
                "USPProcessor is splitting attention heads only: the sequence is not sharded, so every other layer "
                "still runs on all tokens on every rank. Call diffusers_usp.parallelize(pipe) to shard the sequence "
                "as well.",
                stacklevel=4,
            )


def _key_mask(mask: torch.Tensor, batch: int, keys: int) -> torch.Tensor:
    """`[B, keys]` from a key-padding mask (`[B, keys]`, `[B, 1, keys]` or `[B, 1, 1, keys]`, boolean or additive)."""
    if mask.dim() > 2 and all(n == 1 for n in mask.shape[1:-1]):
        mask = mask.reshape(mask.shape[0], mask.shape[-1])
    if mask.dim() != 2 or mask.shape[-1] != keys or mask.shape[0] not in (1, batch):
        raise NotImplementedError(
            f"A sharded self-attention got a mask of shape {tuple(mask.shape)}. Only key-padding masks (the same "
            f"for every query and head: [B, {keys}], [B, 1, {keys}] or [B, 1, 1, {keys}]) can follow their keys "
            "through the all-to-all. Run this model with USPProcessor() alone (heads only, any mask) instead."
        )
    return mask.expand(batch, keys)


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _context_index(cls: type) -> int | None:
    """Where `cls.__call__(self, attn, ...)` takes `encoder_hidden_states` among the arguments after `attn`:
    its position, `sys.maxsize` when it is keyword-only, `None` when it takes none (it has no context to miss)."""
    params = list(inspect.signature(cls.__call__).parameters.values())[2:]
    for at, param in enumerate(params):
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            break
        if param.name == "encoder_hidden_states":
            return at if param.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD else sys.maxsize
    return next((sys.maxsize for p in params if p.name == "encoder_hidden_states"), None)


@functools.cache
def _with_signature_of(inner_cls: type) -> type[USPProcessor]:
    """A `USPProcessor` subclass whose `__call__` shows `inner_cls.__call__`'s parameters.

    diffusers' attention modules keep only the keyword arguments that `inspect.signature(processor.__call__)` names
    (CogVideoX passes its rotary embedding that way), so a `(attn, *args, **kwargs)` signature would silently drop
    them. With the wrapped processor's own signature, a module drops exactly what it would drop for that processor.
    A class attribute, not a per-instance one: Dynamo traces `type(obj).__call__` and refuses instance-level
    `__call__` overrides.
    """

    def __call__(self, attn, *args, **kwargs):
        return USPProcessor.__call__(self, attn, *args, **kwargs)

    __call__.__signature__ = inspect.signature(inner_cls.__call__)
    return type("USPProcessor", (USPProcessor,), {"__call__": __call__, "__module__": __name__})
