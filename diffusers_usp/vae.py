"""The VAE split: a diffusers autoencoder's decode and encode run across the ranks of a group, each rank holding a
band of rows (H) of every feature map, with the same result as one process.

`apply_vae_split` wraps the autoencoder's `_decode` and `_encode` (split the input's rows, run, gather the output's
rows once), and every conv (halo exchange, `halo.conv_rows`), GroupNorm (statistics merged across ranks) and spatial
attention (keys and values gathered from every rank) inside it. Outside a split call every wrapped module runs its
own code untouched. Which classes are proven, and how each pads, is data: `vae_specs.py`. With tiling on, the tiles
are spread over the ranks instead (`vae_tiles.py`, through a hook on the `decoder` and `encoder`).
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from diffusers.hooks import HookRegistry, ModelHook
from torch.overrides import TorchFunctionMode

from .groups import Group
from .halo import conv_halo, conv_rows, gather_rows, group_norm_rows, local_rows, row_sizes
from .vae_specs import NOT_SPLIT, SPECS, VaeSpec
from .vae_tiles import TileHook, TilePass, spread_tiles

_HOOK = "usp_vae_split"
_WARNED: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(message, stacklevel=3)


@dataclass
class VaeSplit:
    """One autoencoder's split: its group, and whether a split `_encode`/`_decode` is running (the wrapped modules
    split only then: a module called outside one, or a whole-run fallback, runs as it always did)."""

    group: Group
    spec: VaeSpec
    encode_unit: int  # an encoder's input rows are split in multiples of this (its downsampling factor)
    halo: int  # the most rows any conv needs from one neighbour: every band must hold at least this many
    active: bool = False
    tiles: TilePass | None = None  # a running spread of the tiles (tiling on: `vae_tiles.py`)


def is_autoencoder(obj) -> bool:
    """Whether `obj` is a diffusers autoencoder (what `parallelize` splits by rows rather than by sequence)."""
    return isinstance(obj, torch.nn.Module) and callable(getattr(obj, "decode", None))


def vae_components(obj) -> list[torch.nn.Module]:
    """The autoencoders to split: `obj` itself, or a pipeline's `vae` (and `audio_vae`, ...) components."""
    if is_autoencoder(obj):
        return [obj]
    components = getattr(obj, "components", None)
    if not isinstance(components, dict):
        return []
    return [m for name, m in components.items() if "vae" in name and is_autoencoder(m)]


def apply_vae_split(vae: torch.nn.Module, group: Group) -> bool:
    """Split `vae`'s decode and encode by rows across `group`. Returns `False`, after a warning given once per class,
    for a class without a spec (it then runs whole on every rank, as before)."""
    if group.size == 1:  # one process: nothing to split, nothing to warn about
        return False
    spec = SPECS.get(type(vae).__name__)
    if spec is None:
        _warn_once(
            type(vae).__name__,
            f"diffusers_usp cannot split {type(vae).__name__} across ranks"
            f"{': ' + NOT_SPLIT[type(vae).__name__] if type(vae).__name__ in NOT_SPLIT else ' yet'}. It runs whole on "
            f"every rank (split: {', '.join(sorted(SPECS))}).",
        )
        return False
    if getattr(vae, "_usp_vae", None) is not None:
        return True
    prepads = spec.prepads(vae)
    convs = [m for m in vae.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d))]
    halo = max([max(conv_halo(c, prepads.get(c, (0, 0)))) for c in convs], default=0)
    split = VaeSplit(group, spec, spec.encode_unit(vae), halo)
    for name in ("decoder", "encoder"):  # the per-tile calls of a tiled decode or encode
        if isinstance(getattr(vae, name, None), torch.nn.Module):
            HookRegistry.check_if_exists_or_initialize(getattr(vae, name)).register_hook(TileHook(split), _HOOK)
    for conv in convs if not spec.tiles_only else ():
        _wrap_conv(conv, prepads.get(conv, (0, 0)), split)
    for module in vae.modules() if not spec.tiles_only else ():
        if isinstance(module, torch.nn.GroupNorm):
            HookRegistry.check_if_exists_or_initialize(module).register_hook(_NormHook(split), _HOOK)
        elif type(module).__name__ in spec.attention:
            HookRegistry.check_if_exists_or_initialize(module).register_hook(_AttentionHook(split), _HOOK)
        elif type(module).__name__ in spec.linear_attention:
            HookRegistry.check_if_exists_or_initialize(module).register_hook(_LinearAttentionHook(split), _HOOK)
        elif type(module).__name__ in spec.unchunked:
            HookRegistry.check_if_exists_or_initialize(module).register_hook(_UnchunkedHook(split), _HOOK)
    for name in ("_decode", "_encode"):
        setattr(vae, name, _split_call(vae, getattr(vae, name), split, encode=name == "_encode"))
    vae._usp_vae = split
    return True


def remove_vae_split(vae: torch.nn.Module) -> None:
    """Undo `apply_vae_split` (nothing for a VAE that was not split)."""
    if getattr(vae, "_usp_vae", None) is None:
        return
    for module in vae.modules():
        if "_conv_forward" in vars(module):
            del module._conv_forward
        registry = getattr(module, "_diffusers_hook", None)
        if registry is not None and registry.get_hook(_HOOK) is not None:
            registry.remove_hook(_HOOK, recurse=False)
    del vae._decode, vae._encode, vae._usp_vae


def _wrap_conv(conv: torch.nn.Module, prepad: tuple[int, int], split: VaeSplit) -> None:
    # `_conv_forward` (torch private, the one touch here): it sees the input after the owner's own padding (Wan's
    # causal conv pads in its forward, then calls `nn.Conv3d.forward`), so one wrapper serves plain convs and every
    # subclass that pads first. Set on the instance; `remove_vae_split` deletes it, and the class method shows again.
    original = conv._conv_forward

    def _conv_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if not split.active:
            return original(x, weight, bias)
        return conv_rows(conv, x, weight, bias, prepad, split.group)

    conv._conv_forward = _conv_forward


class _SplitHook(ModelHook):
    """A module's own forward outside a split call; `split_forward` inside one."""

    def __init__(self, split: VaeSplit) -> None:
        super().__init__()
        self.split = split

    def new_forward(self, module, *args, **kwargs):
        if not self.split.active:
            return self.fn_ref.original_forward(*args, **kwargs)
        return self.split_forward(module, *args, **kwargs)


class _NormHook(_SplitHook):
    """A GroupNorm's statistics over all ranks' rows."""

    def split_forward(self, module, x):
        return group_norm_rows(x, module, self.split.group)


class _UnchunkedHook(_SplitHook):
    """A conv subclass that chunks its input by size runs as its plain conv class under the split."""

    def split_forward(self, module, x):
        plain = next(c for c in type(module).__mro__ if c in (torch.nn.Conv2d, torch.nn.Conv3d))
        return plain.forward(module, x)


class _AttentionHook(_SplitHook):
    """A spatial attention: its queries stay this rank's tokens, its keys and values come from every rank (softmax is
    per query, so this is exact, and the projections before it compute only this rank's tokens)."""

    def split_forward(self, module, *args, **kwargs):
        with _KeysFromEveryRank(self.split.group):
            return self.fn_ref.original_forward(*args, **kwargs)


class _LinearAttentionHook(_SplitHook):
    """Sana's multiscale linear attention (AutoencoderDC): its key-value products, `[B, heads, D + 1, D]`, sum over
    every token, so they are all-reduced. Whether it attends linearly or quadratically follows the whole map's token
    count (one all-reduce, the same on every rank), not the band's, which can fall below the head size alone."""

    def split_forward(self, module, *args, **kwargs):
        module.apply_linear_attention = module.apply_quadratic_attention = functools.partial(self._attend, module)
        try:
            return self.fn_ref.original_forward(*args, **kwargs)
        finally:
            del module.apply_linear_attention, module.apply_quadratic_attention

    def _attend(self, module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        # query, key, value: [B, heads, D, N_local]
        group = self.split.group
        tokens = torch.tensor([query.shape[-1]], dtype=torch.int64, device=query.device)
        dist.all_reduce(tokens, group=group.group)
        if tokens.item() <= module.attention_head_dim:  # the whole map is small: quadratic, over every rank's keys
            kv = gather_rows(torch.cat([key, value], dim=-2).transpose(-1, -2), group).transpose(-1, -2)
            key, value = kv.split([key.shape[-2], value.shape[-2]], dim=-2)
            return type(module).apply_quadratic_attention(module, query, key, value)
        value = F.pad(value, (0, 0, 0, 1), mode="constant", value=1)  # as diffusers: a row of ones counts the keys
        scores = torch.matmul(value, key.transpose(-1, -2))  # [B, heads, D + 1, D]: a sum over this band's tokens
        dist.all_reduce(scores, group=group.group)
        hidden_states = torch.matmul(scores, query).to(dtype=torch.float32)
        return hidden_states[:, :, :-1] / (hidden_states[:, :, -1:] + module.eps)


class _KeysFromEveryRank(TorchFunctionMode):
    """Routes `F.scaled_dot_product_attention` (`[..., S_local, D]` query, key, value) to all ranks' keys and values."""

    def __init__(self, group: Group) -> None:
        super().__init__()
        self.group = group

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            q, k, v, *rest = args
            mask = rest[0] if rest else kwargs.pop("attn_mask", None)
            if len(rest) > 1 or kwargs.get("is_causal"):
                raise NotImplementedError("diffusers_usp's VAE split cannot gather keys for a causal attention.")
            levels = key_levels(mask, q.shape[-2]) if mask is not None else None
            # [..., S_local, Dk | Dv (| 1)] -> every rank's tokens: [..., S, Dk | Dv (| 1)], in one all-gather
            parts = [k, v] + ([levels.to(k.dtype)[:, None].expand(*k.shape[:-1], 1)] if levels is not None else [])
            gathered = gather_rows(torch.cat(parts, dim=-1), self.group)
            k, v, *level = gathered.split([k.shape[-1], v.shape[-1]] + [1] * len(parts[2:]), dim=-1)
            if level:  # key j is seen by query i iff level(j) <= level(i), as in the local mask
                seen = level[0].reshape(-1, level[0].shape[-2])[0][None, :] <= levels[:, None]
                kwargs["attn_mask"] = seen if mask.dtype == torch.bool else torch.zeros_like(seen, dtype=mask.dtype)
                if mask.dtype != torch.bool:
                    kwargs["attn_mask"].masked_fill_(~seen, float("-inf"))
            return func(q, k, v, **kwargs)
        return func(*args, **kwargs)


def key_levels(mask: torch.Tensor, tokens: int) -> torch.Tensor:
    """`[S_local]` levels such that the local self-attention mask lets query i see key j iff `level[j] <= level[i]`
    (HunyuanVideo's frame-causal mask: the level is the frame), checked against `mask`: a mask of another shape would
    need keys from other ranks that no rank can describe, so it is refused."""
    seen = mask if mask.dtype == torch.bool else mask == 0
    seen = seen.reshape(-1, tokens, seen.shape[-1])  # [B * heads, S_local, S_local]
    counts = seen[0].sum(-1)  # keys each query sees: grows with the level
    levels = counts.to(torch.float32)
    if seen.shape[-1] != tokens or not torch.equal(seen, (levels[None, :] <= levels[:, None]).expand_as(seen)):
        raise NotImplementedError(
            "diffusers_usp's VAE split gathers keys only for unmasked or block-causal (frame-causal) attention."
        )
    return levels / counts.min()  # the frame + 1 on every rank, whatever its band's height


def _split_call(vae: torch.nn.Module, original, split: VaeSplit, encode: bool):
    """`original` (`_encode(x)` or `_decode(z)`) on this rank's rows of its input, with one all-gather of the rows of
    its output; or, with tiling on and an input the class tiles, on this rank's share of its tiles (`vae_tiles.py`)."""
    which = "encode" if encode else "decode"

    def call(x: torch.Tensor, *args, **kwargs):
        group = split.group
        if split.active:  # re-entered (a tiled path calling back): already split
            return original(x, *args, **kwargs)
        tiled = getattr(vae, "use_tiling", False)
        if tiled:  # each rank computes its share of the tiles
            _check_same(x, group)
            out = spread_tiles(split, original, x, args, kwargs)
            if out is not None:
                return out
        if split.spec.tiles_only:  # nothing to split: the class has no row split (diffusers tiles it, or raises)
            return original(x, *args, **kwargs)
        unit = split.encode_unit if encode else 1
        sizes = row_sizes(x.shape[-2], group.size, unit)
        if min(sizes) // unit < max(split.halo, 1):  # a band thinner than a halo would need rows from 2 ranks away
            _warn_once(
                f"rows-{which}",
                f"diffusers_usp: {x.shape[-2]} rows are too few to split {type(vae).__name__}'s {which} across "
                f"{group.size} ranks; it runs whole on every rank.",
            )
            return original(x, *args, **kwargs)
        if not tiled:  # else checked above
            _check_same(x, group)
        split.active = True
        try:
            out = original(local_rows(x, sizes, group.rank).contiguous(), *args, **kwargs)
        finally:
            split.active = False
        return _map_first(out, lambda t: gather_rows(t.contiguous(), group))

    return call


def _check_same(x: torch.Tensor, group: Group) -> None:
    """One all-reduce of a checksum: ranks holding different latents would assemble one image from mismatched bands."""
    total = x.detach().double().sum()
    both = torch.stack([total, -total])
    dist.all_reduce(both, op=dist.ReduceOp.MAX, group=group.group)
    if not torch.equal(both[0], -both[1]):
        raise RuntimeError(
            "diffusers_usp: the ranks hold different VAE inputs, so their bands of one image would not fit together. "
            "Every rank must run the same pipeline call with the same seed."
        )


def _map_first(out, fn):
    """`out` (a tensor, a `(tensor, ...)` tuple or a `DecoderOutput`) with its tensor replaced by `fn(tensor)`."""
    if torch.is_tensor(out):
        return fn(out)
    if isinstance(out, tuple):
        return (fn(out[0]), *out[1:])
    out.sample = fn(out.sample)
    return out
