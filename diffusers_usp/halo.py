"""Row-split convolutions and norms: each rank holds a band of rows (dim -2, H) of a feature map, and convs, group
norms and attention compute exactly what they would on the whole map.

A conv whose window crosses a split first receives a halo of rows from each neighbour: with `pt` rows of padding
above (the conv's own plus any its owner adds first), kernel extent `k` and stride `s`, the rank above sends its last
`pt` rows and the rank below its first `k - s - pt` rows. The conv then runs without padding in H and returns exactly
this rank's output rows, as long as every split but the last sits on a multiple of `s` (encoders split their input
in multiples of their downsampling factor). Edge ranks keep the padding the conv (or its owner) makes. No diffusers
imports: the same exchange serves convs over a transformer's token grid.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .comm import all_gather_dim
from .groups import Group

# torch 2.13 renamed all_gather_into_tensor (and warns on the old name); older torch has only the old one.
_all_gather_single = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


def row_sizes(total: int, world_size: int, unit: int = 1) -> tuple[int, ...]:
    """Rows per rank: `torch.tensor_split`'s sizes in blocks of `unit` rows, the remainder (`total % unit`) on the
    last rank. Every rank computes the same tuple from shapes alone."""
    blocks, rest = total // unit, total % unit
    sizes = [unit * (blocks // world_size + (rank < blocks % world_size)) for rank in range(world_size)]
    sizes[-1] += rest
    return tuple(sizes)


def local_rows(x: torch.Tensor, sizes: tuple[int, ...], rank: int) -> torch.Tensor:
    """This rank's band of `x`'s rows (dim -2) under `sizes`."""
    start = sum(sizes[:rank])
    return x.narrow(-2, start, sizes[rank])


def gather_rows(x: torch.Tensor, group: Group) -> torch.Tensor:
    """Every rank's band of rows (dim -2), concatenated in rank order, on every rank: one all-gather of the band
    heights (bands may differ, e.g. an encoder's last one), then one of the bands padded to the tallest."""
    heights = torch.tensor([x.shape[-2]], dtype=torch.int64, device=x.device)
    every = heights.new_empty(group.size)
    _all_gather_single(every, heights, group=group.group)
    return all_gather_dim(x, x.dim() - 2, group, tuple(every.tolist()))


def exchange_halo(x: torch.Tensor, above: int, below: int, group: Group) -> tuple[torch.Tensor | None, ...]:
    """`(last `above` rows of the rank above, first `below` rows of the rank below)` of `x` (dim -2), `None` at an
    edge or for a count of 0. Every rank asks for the same counts, so each sends what its neighbours ask for."""
    rank, size = group.rank, group.size
    peer = lambda r: r if group.group is None else dist.get_global_rank(group.group, r)  # noqa: E731
    ops, got_above, got_below = [], None, None
    shape = list(x.shape)
    if above > 0 and rank > 0:
        got_above = x.new_empty(shape[:-2] + [above, shape[-1]])
        ops.append(dist.P2POp(dist.irecv, got_above, peer(rank - 1), group.group))
    if above > 0 and rank < size - 1:
        ops.append(dist.P2POp(dist.isend, x[..., x.shape[-2] - above :, :].contiguous(), peer(rank + 1), group.group))
    if below > 0 and rank < size - 1:
        got_below = x.new_empty(shape[:-2] + [below, shape[-1]])
        ops.append(dist.P2POp(dist.irecv, got_below, peer(rank + 1), group.group))
    if below > 0 and rank > 0:
        ops.append(dist.P2POp(dist.isend, x[..., :below, :].contiguous(), peer(rank - 1), group.group))
    if ops:
        for work in dist.batch_isend_irecv(ops):
            work.wait()
    return got_above, got_below


def conv_halo(conv: torch.nn.Module, prepad: tuple[int, int]) -> tuple[int, int]:
    """`(rows from above, rows from below)` that `conv` needs at an interior split, when its owner pads `prepad`
    rows above and below before calling it. Below may be negative: rows this rank drops (a 1x1 stride-2 conv)."""
    k, d, s = conv.kernel_size[-2], conv.dilation[-2], conv.stride[-2]
    top = prepad[0] + _h_padding(conv)
    return top, d * (k - 1) + 1 - s - top


def _h_padding(conv: torch.nn.Module) -> int:
    if isinstance(conv.padding, str):  # "same" (stride 1) or "valid"
        return 0 if conv.padding == "valid" else conv.dilation[-2] * (conv.kernel_size[-2] - 1) // 2
    return conv.padding[-2]


def conv_rows(
    conv: torch.nn.Module,
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    prepad: tuple[int, int],
    group: Group,
) -> torch.Tensor:
    """`conv`'s output rows for this rank's band, exactly as on the whole map.

    Args:
        conv (`torch.nn.Conv2d` or `torch.nn.Conv3d`): the conv (its kernel, stride, dilation, padding, groups).
        x (`torch.Tensor`): `[B, C, (T,) h + prepad, W]`, this rank's rows with the `prepad` rows its owner added.
        weight, bias: what `nn.Conv*d._conv_forward` was given.
        prepad (`tuple[int, int]`): rows the owner padded above and below (Wan's causal conv, a `ZeroPad2d` before a
            stride-2 conv). Edge ranks keep them; interior ranks replace them with their neighbours' rows.
        group (`Group`): the ranks splitting the rows, in order from the top.
    """
    p = _h_padding(conv)
    if p and any(prepad):
        raise NotImplementedError(f"{type(conv).__name__} pads rows both before and inside the conv.")
    top, below = conv_halo(conv, prepad)
    first, last = group.rank == 0, group.rank == group.size - 1
    h = x.shape[-2] - prepad[0] - prepad[1]
    rows = x.narrow(-2, prepad[0], h)
    got_above, got_below = exchange_halo(rows, top, max(below, 0), group)
    parts = [x.narrow(-2, 0, prepad[0]) if first else got_above]
    parts.append(rows if last or below >= 0 else rows.narrow(-2, 0, h + below))
    parts.append(x.narrow(-2, x.shape[-2] - prepad[1], prepad[1]) if last else got_below)
    parts = [t for t in parts if t is not None and t.shape[-2] > 0]
    x = torch.cat(parts, dim=-2) if len(parts) > 1 else parts[0]  # a 1x1 conv needs no halo: no copy
    # The conv's own padding: edge rows in its padding mode on the edge ranks only; other dims as the conv pads them.
    spatial = x.dim() - 2
    pad = [0] * (2 * spatial)  # F.pad order: last dim first
    if p:
        pad[2], pad[3] = (p if first else 0), (p if last else 0)
    other = list(conv.padding) if not isinstance(conv.padding, str) else [_same(conv, i) for i in range(spatial)]
    other[-2] = 0
    mode = conv.padding_mode
    if mode == "circular" and p:
        raise NotImplementedError("A circular conv wraps rows around the whole map; it cannot be split by rows.")
    if mode != "zeros":  # everything padded here in the conv's mode, as nn.Conv*d does
        for i in range(spatial):
            pad[2 * (spatial - 1 - i)] += other[i] if i != spatial - 2 else 0
            pad[2 * (spatial - 1 - i) + 1] += other[i] if i != spatial - 2 else 0
        x = F.pad(x, pad, mode=mode) if any(pad) else x
        other = [0] * spatial
    elif any(pad):
        x = F.pad(x, pad)
    fn = F.conv2d if spatial == 2 else F.conv3d
    return fn(x, weight, bias, conv.stride, tuple(other), conv.dilation, conv.groups)


def _same(conv: torch.nn.Module, i: int) -> int:
    return 0 if conv.padding == "valid" else conv.dilation[i] * (conv.kernel_size[i] - 1) // 2


def group_norm_rows(x: torch.Tensor, norm: torch.nn.GroupNorm, group: Group) -> torch.Tensor:
    """`norm(x)` for a GroupNorm whose statistics span the split rows: each rank's per-group count, mean and sum of
    squared deviations, from one all-gather, merged exactly (Chan et al.'s parallel variance), so no rank's sum of
    squares loses the mean's digits."""
    B, C = x.shape[:2]
    G = norm.num_groups
    xg = x.reshape(B, G, -1).float()  # [B, G, C/G * spatial], float32 as torch's kernels accumulate
    var, mean = torch.var_mean(xg, dim=-1, correction=0)  # [B, G] each
    n = torch.full_like(mean, xg.shape[-1], dtype=torch.float32)
    stats = torch.stack([n, mean, var * n])  # [3, B, G]: count, mean, M2
    every = stats.new_empty(group.size * 3, *stats.shape[1:])  # gloo wants the inputs concatenated along dim 0
    _all_gather_single(every, stats, group=group.group)
    counts, means, m2 = every.view(group.size, *stats.shape).unbind(1)  # [P, B, G] each
    total = counts.sum(0)
    mean_all = (counts * means).sum(0) / total
    var_all = (m2 + counts * (means - mean_all) ** 2).sum(0) / total
    rstd = torch.rsqrt(var_all + norm.eps)
    y = ((xg - mean_all[..., None]) * rstd[..., None]).to(x.dtype).reshape(x.shape)
    if norm.affine:
        shape = (1, C) + (1,) * (x.dim() - 2)
        y = y * norm.weight.view(shape) + norm.bias.view(shape)
    return y
