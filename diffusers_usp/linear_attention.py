"""Linear attention over a sharded sequence: one all-reduce of the key-value sums, no all-to-all.

ReLU linear attention (Sana, Sana-Video) computes, per head, `out_i = (sum_j v_j k_j^T) q_i / (sum_j k_j)^T q_i`.
The two sums over keys, `K^T V` (`[B, H, D, D]`) and `sum_j k_j` (`[B, H, D]`), are the only terms that read other
tokens. With the tokens sharded, each rank sums over its own keys, ONE all-reduce (sum) of both, packed into one
buffer, completes them, and each rank applies them to its own queries. The result is exact up to the order of the
float32 additions, at any split: linear attention has no softmax to merge, so it needs no head split either.

- Ring layouts (`ring_degree > 1`): the sums are reduced over the whole sequence group (every ring block and every
  Ulysses rank), which is exact; linear attention has no ring form and needs none.
- Keys that every rank holds whole (a cross role, or a bare `USPProcessor()` whose sequence is not sharded): no
  collective; each rank computes what one process computes.

diffusers' linear processors compute these sums inside their own `__call__`, with no kernel call to intercept
(`F.scaled_dot_product_attention` or `dispatch_attention_fn`), so `USPProcessor` routes each of them, by class, to a
function here that repeats the processor's steps with its math unchanged (ReLU kernel, float32 upcast, the padding row
of ones that counts the keys, the eps) and takes the key sums through `token_sum`. `LINEAR_PROCESSORS` lists them;
`tests/test_sana.py` checks each against its stock processor.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .groups import Group

# `token_sum(partial)`: `partial`, a sum over this rank's keys, completed over every rank's keys.
TokenSum = Callable[[torch.Tensor], torch.Tensor]


def all_reduce_token_sum(partial: torch.Tensor, group: Group) -> torch.Tensor:
    """`partial` summed over every rank of `group`: one all-reduce (the key-value sums of one linear attention)."""
    total = partial.contiguous()
    dist.all_reduce(total, group=group.group)
    return total


def _project(attn, hidden_states, encoder_hidden_states):
    """Query, key, value `[B, S_local, H*D]`, with the module's QK norms, as both processors project them."""
    context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
    query, key, value = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    return query, key, value


def sana_linear_attention_2_0(
    processor, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, *, token_sum: TokenSum
) -> torch.Tensor:
    """`SanaLinearAttnProcessor2_0.__call__` (Sana) with its key sums completed by `token_sum`. Its padding row of
    ones puts `sum_j k_j` in the last row of `V^T K` (`[B, H, D + 1, D]`), so one buffer carries both sums."""
    original_dtype = hidden_states.dtype
    query, key, value = _project(attn, hidden_states, encoder_hidden_states)
    # [B, S_local, H*D] -> query, value [B, H, D, S_local]; key [B, H, S_local, D]
    query = query.transpose(1, 2).unflatten(1, (attn.heads, -1))
    key = key.transpose(1, 2).unflatten(1, (attn.heads, -1)).transpose(2, 3)
    value = value.transpose(1, 2).unflatten(1, (attn.heads, -1))
    query, key = F.relu(query), F.relu(key)
    query, key, value = query.float(), key.float(), value.float()
    value = F.pad(value, (0, 0, 0, 1), mode="constant", value=1.0)  # [B, H, D + 1, S_local]
    scores = token_sum(torch.matmul(value, key))  # [B, H, D + 1, D]: V^T K over every rank's keys
    hidden_states = torch.matmul(scores, query)  # [B, H, D + 1, S_local]
    hidden_states = hidden_states[:, :, :-1] / (hidden_states[:, :, -1:] + 1e-15)
    hidden_states = hidden_states.flatten(1, 2).transpose(1, 2).to(original_dtype)  # [B, S_local, H*D]
    hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
    if original_dtype == torch.float16:
        hidden_states = hidden_states.clip(-65504, 65504)
    return hidden_states


def _rotate(x: torch.Tensor, freqs_cos: torch.Tensor, freqs_sin: torch.Tensor) -> torch.Tensor:
    """Sana-Video's interleaved rotary embedding, as its processor applies it (`[B, S, H, D]`)."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = freqs_cos[..., 0::2], freqs_sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(x)


def sana_linear_attention_3_0(
    processor,
    attn,
    hidden_states,
    encoder_hidden_states=None,
    attention_mask=None,
    rotary_emb=None,
    *,
    token_sum: TokenSum,
) -> torch.Tensor:
    """`SanaLinearAttnProcessor3_0.__call__` (Sana-Video) with its key sums completed by `token_sum`. Its
    denominator sums the keys before RoPE and its numerator uses them after, so the two sums are packed side by
    side (`[B, H, D, D + 1]`) into one all-reduce."""
    original_dtype = hidden_states.dtype
    query, key, value = _project(attn, hidden_states, encoder_hidden_states)
    # [B, S_local, H*D] -> [B, S_local, H, D]
    query, key, value = (t.unflatten(2, (attn.heads, -1)) for t in (query, key, value))
    query, key = F.relu(query), F.relu(key)
    # diffusers' processor requires the rotary table (it reads the rotated tensors unconditionally)
    query_rotate, key_rotate = _rotate(query, *rotary_emb), _rotate(key, *rotary_emb)
    # [B, S_local, H, D] -> [B, H, D, S_local]
    query, key, value = (t.permute(0, 2, 3, 1) for t in (query, key, value))
    query_rotate, key_rotate = query_rotate.permute(0, 2, 3, 1).float(), key_rotate.permute(0, 2, 3, 1).float()
    value = value.float()
    key_sums = key.sum(dim=-1, keepdim=True)  # [B, H, D, 1], in the keys' dtype, as the processor sums them
    scores = torch.matmul(value, key_rotate.transpose(-1, -2))  # [B, H, D, D]
    packed = token_sum(torch.cat([scores, key_sums.float()], dim=-1))  # [B, H, D, D + 1], over every rank's keys
    scores, key_sums = packed[..., :-1], packed[..., -1:].to(key.dtype)
    z = 1 / (key_sums.transpose(-2, -1) @ query + 1e-15)  # [B, H, 1, S_local]
    hidden_states = torch.matmul(scores, query_rotate) * z  # [B, H, D, S_local]
    hidden_states = hidden_states.flatten(1, 2).transpose(1, 2).to(original_dtype)  # [B, S_local, H*D]
    return attn.to_out[1](attn.to_out[0](hidden_states))


# Processor class (module and qualified name) -> the function that computes it with its key sums completed.
LINEAR_PROCESSORS: dict[str, Callable[..., torch.Tensor]] = {
    "diffusers.models.attention_processor.SanaLinearAttnProcessor2_0": sana_linear_attention_2_0,
    "diffusers.models.transformers.transformer_sana_video.SanaLinearAttnProcessor3_0": sana_linear_attention_3_0,
}
