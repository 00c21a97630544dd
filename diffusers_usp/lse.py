"""Attention that also returns the log-sum-exp, and the exact merge of two partial attentions by it: the kernels a ring
of key/value blocks needs (`ring.py`). No diffusers imports.

SDPA and diffusers' backends return no log-sum-exp, so on CUDA these call torch's fused kernels directly
(`compat.sdpa_*_lse`); elsewhere, a float32 math path.
"""

from __future__ import annotations

import torch

from .compat import sdpa_cudnn_lse, sdpa_efficient_lse, sdpa_flash_lse

# The fused kernel's dtypes (not float64); it also wants the head dim 8-aligned.
_FUSED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def attention_lse(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of one key block that also returns its log-sum-exp, the statistic an exact merge needs.

    Args:
        q (`torch.Tensor`): `[B, Sq, h, D]` queries.
        k, v (`torch.Tensor`): `[B, Sk, h, D]` keys and values, one per query head (GQA already expanded).
        bias (`torch.Tensor`, *optional*): additive float32 bias (`-inf` masks): `[B, Sk]`, one per key, or
            `[B, 1 or h, Sq, Sk]`, one per query and key (a dense mask).
        scale (`float`): the softmax scale.

    Returns:
        `(out, lse)`: `[B, h, Sq, D]` in the kernel's dtype (float32 on the math path; `merge_lse` accumulates in
        float32) and `[B, h, Sq]` in float32. A row with no attended key has `lse = -inf` and `out = 0`, so that it
        weighs nothing in a merge.
    """
    if q.is_cuda and q.shape[-1] % 8 == 0 and q.dtype in _FUSED_DTYPES:  # else the math path below
        return _attention_lse_cuda(q, k, v, bias, scale)
    # (B, S, h, D) -transpose-> (B, h, S, D), in float32 whatever the input dtype
    q_bhsd, k_bhsd, v_bhsd = (x.transpose(1, 2).float() for x in (q, k, v))
    scores = q_bhsd @ k_bhsd.transpose(-1, -2) * scale  # [B, h, Sq, Sk]
    if bias is not None:
        scores = scores + (bias if bias.dim() == 4 else bias[:, None, None, :])
    lse = scores.logsumexp(dim=-1)  # [B, h, Sq]
    probs = torch.exp(scores - _finite(lse).unsqueeze(-1))  # rows of only -inf scores: exp(-inf) = 0, not nan
    return probs @ v_bhsd, lse


# Per CUDA device index: whether its cuDNN attention is the fast kernel (Hopper and later, where SDPA itself picks it).
_CUDNN_FAST: dict[int | None, bool] = {}


def _cudnn_fast(device: torch.device) -> bool:
    fast = _CUDNN_FAST.get(device.index)
    if fast is None:
        fast = torch.backends.cudnn.is_available() and torch.cuda.get_device_capability(device) >= (9, 0)
        _CUDNN_FAST[device.index] = fast
    return fast


def kernel_bias(bias: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """A `[B, Sk]` key bias or `[B, 1 or h, Sq, Sk]` dense bias as the fused kernels take it, for `[B, h, Sq, D]`
    queries `q`: in their dtype, its rows 16-aligned (padded, then sliced, as SDPA does), expanded without a copy to
    `[B, h, Sq, Sk]`."""
    (B, h, Sq, _), Sk = q.shape, bias.shape[-1]
    rows = bias.shape[1:3] if bias.dim() == 4 else (1, 1)
    padded = q.new_zeros(B, *rows, -(-Sk // 16) * 16)
    padded[..., :Sk] = bias if bias.dim() == 4 else bias[:, None, None, :]
    return padded[..., :Sk].expand(B, h, Sq, Sk)


def _attention_lse_cuda(q, k, v, bias, scale):
    """`attention_lse` on CUDA. In half precision on Hopper and later: cuDNN's kernel, the one SDPA itself runs
    there, asked for the LSE (float32), with the key bias when there is one. On an H200, flash attention took 1.6 to
    1.8 times as long as cuDNN's at ring-block shapes, and the memory-efficient kernel 3.2 times
    (`benchmarks/lse_kernels.py`). Before Hopper: flash attention without a bias. With a bias there, or in float32:
    the memory-efficient kernel, which takes a float bias and returns the LSE too."""
    B, Sq, h, D = q.shape
    q_, k_, v_ = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    attn_bias = None if bias is None else kernel_bias(bias, q_)
    half = q.dtype != torch.float32 and D <= 128
    if half and _cudnn_fast(q.device):
        out, lse = sdpa_cudnn_lse(q_, k_, v_, attn_bias, True, scale=scale)[:2]
        lse = lse.reshape(B, h, Sq)
    elif half and bias is None:
        out, lse = sdpa_flash_lse(q_, k_, v_, scale=scale)[:2]
        lse = lse.reshape(B, h, Sq)
    else:
        out, lse = sdpa_efficient_lse(q_, k_, v_, attn_bias, True, scale=scale)[:2]
        lse = lse[..., :Sq]  # padded to a multiple of 32 queries
    if bias is None:
        return out, lse  # every row attends at least one key, so no lse is -inf
    # A row with every key of this block masked has no attended key. Set what the kernel leaves there (not specified)
    # to what a merge needs. A key-padding bias is the same for every query and head: then a whole batch row is dead.
    dead = torch.isneginf(bias).all(dim=-1)  # [B] for a key bias, [B, 1 or h, Sq] for a dense one
    dead = dead[:, None, None] if bias.dim() == 2 else dead
    lse = lse.masked_fill(dead, float("-inf"))
    out = out.masked_fill(dead.unsqueeze(-1), 0.0)
    return out, lse


def _finite(lse: torch.Tensor) -> torch.Tensor:
    return lse.masked_fill(lse == float("-inf"), 0.0)


def merge_lse(
    out: torch.Tensor, lse: torch.Tensor, block_out: torch.Tensor, block_lse: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold one block's partial attention into the running one, exactly: each side is weighted by its share of the
    softmax denominator, `exp(lse_side - lse_total)`.

    Args:
        out, block_out (`torch.Tensor`): `[B, h, Sq, D]` partial outputs. A float32 `out` is updated in place; one in
            another dtype (the first block's, as its kernel returned it) is replaced by a float32 tensor.
        lse, block_lse (`torch.Tensor`): `[B, h, Sq]` float32 log-sum-exps of the keys each side attended.

    Returns:
        `(out, lse)` over the keys of both sides, `out` in float32.
    """
    total = torch.logaddexp(lse, block_lse)
    anchor = _finite(total)  # a row no key of either side reaches stays 0 (and -inf) instead of nan
    weight = torch.exp(lse - anchor).unsqueeze(-1)
    # Two passes over the output: scale (reading the first block in its own dtype), then a fused multiply-add.
    out = out.mul_(weight) if out.dtype == torch.float32 else out * weight
    return out.addcmul_(block_out, torch.exp(block_lse - anchor).unsqueeze(-1)), total
