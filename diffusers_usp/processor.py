"""`USPProcessor`: wraps a model's own diffusers attention processor and routes its attention kernel calls to the USP
core by the module's role: sharded (`attention.sharded_attention`), cross-attention to K/V every rank holds
(`attention.cross_attention`), or heads only (`attention.head_parallel_attention`); or, for a module
whose queries and keys/values are two different sharded sequences, `two_sequences.attend_two`.

The wrapped processor keeps doing what diffusers wrote it to do: projections, norms, RoPE, output projection. How its
kernel call reaches this class is `intercept.py`'s business. Only kernel calls written in the processor's `__call__`
are routed; a sharded or cross module whose processor attends through a helper function instead raises after the
call (a per-call count of routed kernel calls), rather than return attention over this rank's tokens only.

Linear attention processors (Sana's) make no kernel call at all: they are routed by class to `linear_attention.py`,
whose copy of their math takes its key-value sums through `_token_sum` (one all-reduce when the keys are sharded).
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.attention_dispatch import dispatch_attention_fn

from .attention import cross_attention, head_parallel_attention, sharded_attention
from .compat import default_processor_class, forwarded_attention_backend
from .groups import Group, resolve_group
from .intercept import (
    IP_ADAPTER_LATER_CALLS,
    KERNEL_SKIPPED_WHEN,
    IPAdapterCall,
    context_index,
    functional_with_sdpa,
    qualname,
    rebind,
    with_signature_of,
)  # fmt: skip
from .linear_attention import LINEAR_PROCESSORS, all_reduce_token_sum
from .role import AttentionRole
from .two_sequences import attend_two


class USPProcessor:
    """Ulysses sequence-parallel attention for any diffusers attention module.

    Two ways to install it:

    - `diffusers_usp.parallelize(pipe)` wraps every attention module's own processor, with the module's role
      (sharded or cross), and shards the sequence at the transformer's entry and exit. Each attention then makes one
      all-to-all in and one out (none for cross-attention to replicated text), and every other layer works on 1/P of
      the tokens. `diffusers_usp.remove_parallelism(pipe)` puts the original processors back.
    - `transformer.set_attn_processor(USPProcessor())` alone leaves the sequence whole on every rank (the `"heads"`
      role). It is still exact: each rank attends its own heads and one all-gather completes them. It warns once,
      since only attention is split; use `parallelize` for the full speed-up.

    With one process (no launcher, or world size 1) it computes exactly what the wrapped processor computes.

    Args:
        processor (`AttentionProcessor`, *optional*):
            The processor to wrap. Defaults to each attention module's default processor class (heads role only).
        group (`torch.distributed.ProcessGroup`, *optional*):
            The ranks that share one sequence, for the heads role. Defaults to the default process group.
        role (`AttentionRole`, *optional*):
            What this module does: heads only (the default), sharded or cross. A sharded or cross role wraps one
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
                cls = with_signature_of(USPProcessor, type(inner))
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
            raise ValueError("Pass `group` for the heads role only: a sharded or cross role uses its sequence's group.")
        self.processor = processor
        self.role = role
        self._group_arg = group
        self._group: Group | None = role.sequence.group if role.sequence is not None else None
        self._heads = role.mode == "heads"
        self._cross = role.mode == "cross"
        # Per call of a sharded or cross module on several ranks: the kernel calls routed so far (none at the end
        # means the processor attended through code we cannot reach), and whether a cross module was called without
        # its context. Plain attributes: Dynamo traces their updates as side effects, with no graph break.
        self._counted = not self._heads and self._group.size > 1
        self._kernel_calls = 0
        self._self_attends = False
        self._context_at = context_index(type(processor)) if role.sharded_queries else None
        self._later = IP_ADAPTER_LATER_CALLS.get(qualname(type(processor))) if role.mode == "sharded" else None
        self._skip_when = KERNEL_SKIPPED_WHEN.get(qualname(type(processor)))  # looked up once, not per call
        self._warned = False
        self._rebound: dict[type, Any] = {}
        self._functional = functional_with_sdpa(self._sdpa)
        if processor is not None:
            # Now, not on the first call: building a function is not something torch.compile can trace.
            self._rebound[type(processor)] = self._rebind(type(processor).__call__)

    def __repr__(self) -> str:
        inner = type(self.processor).__name__ if self.processor is not None else "default"
        return f"USPProcessor({inner}, {self.role.mode})"

    _attention_backend = forwarded_attention_backend  # diffusers' `set_attention_backend` reaches the wrapped one

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
        skip = self._skip_when
        if not self._kernel_calls and not (skip is not None and kwargs.get(skip)):
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
            cls = default_processor_class(attn)
            if cls is None:
                raise TypeError(
                    f"USPProcessor() cannot tell which processor {type(attn).__name__} normally uses. Wrap it "
                    "explicitly, USPProcessor(<its processor>), or call diffusers_usp.parallelize(model), which "
                    "wraps each module's own processor."
                )
            inner = cls()
            attn._usp_default_processor = inner
        return inner

    def _rebind(self, fn):
        linear = LINEAR_PROCESSORS.get(f"{fn.__module__}.{fn.__qualname__.rpartition('.')[0]}")
        if linear is not None:  # no kernel call to intercept: its key sums go through `_token_sum`
            return functools.partial(linear, token_sum=self._token_sum)
        return rebind(fn, self._dispatch, self._functional)

    def _token_sum(self, partial: torch.Tensor) -> torch.Tensor:
        """The kernel entry of linear attention (`linear_attention.py`): `partial`, a sum over this call's keys,
        completed over every rank's keys when they are sharded (one all-reduce over the whole sequence group, ring
        layouts included)."""
        group = self._group if self._group is not None else resolve_group(self._group_arg)
        if group.size == 1 or self._heads:  # the sequence is whole on every rank: so are the sums
            return partial
        self._kernel_calls += 1
        if self._cross and not self._self_attends:  # keys every rank holds whole
            return partial
        return all_reduce_token_sum(partial, group)

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
        ring = self.role.sequence.ring if self.role.mode == "sharded" else None
        if attention_kwargs and ring is not None and ring.size > 1:  # the same on every rank: all raise
            raise NotImplementedError(
                f"{self.role}: ring attention attends each key/value block with its own kernel, which does not take "
                f"the attention backend's `attention_kwargs` ({sorted(attention_kwargs)}: ACE-Step's sliding window "
                "under a flash backend). Run it without a ring (ring_degree=1), or with the native attention backend."
            )

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
            group = self._group = resolve_group(self._group_arg)
        if group.size == 1:
            return kernel(query, key, value, attn_mask)
        if self._heads:
            self._warn_heads_only()
            return head_parallel_attention(query, key, value, kernel, group, attn_mask)
        index = self._kernel_calls
        self._kernel_calls = index + 1
        seq, who = self.role.sequence, str(self.role)
        if index and self._later is IPAdapterCall.CROSS:
            return cross_attention(query, key, value, kernel, attn_mask)
        if index and self._later is IPAdapterCall.KV_SUFFIX:
            if attn_mask is not None:
                raise NotImplementedError(f"{who}: an IP-Adapter attention with a mask is not supported.")
            q_tokens = query.shape[1]  # the image keys are the queries' own tokens; the image-prompt ones follow
            prompt = (key[:, q_tokens:], value[:, q_tokens:])
            return sharded_attention(
                query, key[:, :q_tokens], value[:, :q_tokens], kernel, seq.call(False, who),
                is_causal=is_causal, scale=scale, dropout_p=dropout_p, kv_prefix=prompt,
            )  # fmt: skip
        if self._cross and not self._self_attends:
            return cross_attention(query, key, value, kernel, attn_mask)
        if self.role.two_sequences:
            return attend_two(
                query, key, value, kernel, seq, who,
                attn_mask=attn_mask, is_causal=is_causal, dropout_p=dropout_p, scale=scale,
            )  # fmt: skip
        # A cross module called without its context self-attends its own (sharded) tokens, without the joint text.
        call = seq.call(self.role.joint and not self._cross, who, query.shape[1])
        if self.role.kv_prefix:  # keys [whole tokens, this rank's tokens]; a mask covers both, in that order
            T = key.shape[1] - query.shape[1]
            return sharded_attention(
                query, key[:, T:], value[:, T:], kernel, call, attn_mask=attn_mask, is_causal=is_causal, scale=scale,
                dropout_p=dropout_p, kv_prefix=(key[:, :T], value[:, :T]),
            )  # fmt: skip
        return sharded_attention(
            query, key, value, kernel, call, attn_mask=attn_mask, is_causal=is_causal, scale=scale, dropout_p=dropout_p
        )

    def _warn_heads_only(self) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(
                "USPProcessor is splitting attention heads only: the sequence is not sharded, so every other layer "
                "still runs on all tokens on every rank. Call diffusers_usp.parallelize(pipe) to shard the sequence "
                "as well.",
                stacklevel=4,
            )
