"""What the VAE split needs to know about each autoencoder class, as data: which of its modules attend over the
split rows, which convs are padded by their owner before they run (and by how many rows above and below), and the
multiple of rows an encoder's input is split in. A class is listed here only once it is proven equal to one process
at 2, 3 and 4 ranks (tests/test_vae.py, docs/vaes.md); any other runs whole on every rank."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

_CONVS = (nn.Conv2d, nn.Conv3d)


# Owners that pad rows with `F.pad` in their forward before calling their conv: `{class name: owner -> {conv:
# (rows above, rows below)}}`, read from each class's forward in diffusers 0.42.
OWNER_PADS: dict[str, Callable[[nn.Module], dict[nn.Module, tuple[int, int]]]] = {
    # pads one row below (and one column right) before a stride-2 conv when `padding=0` (AutoencoderKL's encoder)
    "Downsample2D": lambda m: {m.conv: (0, 1)} if m.use_conv and m.padding == 0 else {},
    "CogVideoXDownsample3D": lambda m: {m.conv: (0, 1)},
    # `time_causal_padding` is F.pad's (W, W, H, H, T, T), in the owner's pad mode (replicate)
    "HunyuanVideoCausalConv3d": lambda m: {m.conv: m.time_causal_padding[2:4]},
    "HunyuanVideo15CausalConv3d": lambda m: {m.conv: m.time_causal_padding[2:4]},
    # replicate mode pads everything with F.pad; other modes pad H inside the conv
    "CogVideoXCausalConv3d": lambda m: {m.conv: (m.height_pad,) * 2} if m.pad_mode == "replicate" else {},
}


def standard_prepads(vae: nn.Module) -> dict[nn.Module, tuple[int, int]]:
    """`{conv: (rows padded above, rows padded below)}` for the owner-padded convs of diffusers' autoencoders:
    - causal convs that keep their padding in `_padding` (W, W, H, H, T, T) and pad in their forward (Wan, Qwen-Image);
    - a conv right after a `ZeroPad2d`/`ConstantPad2d` in an `nn.Sequential` (Wan's stride-2 downsamplers);
    - the owners in `OWNER_PADS`."""
    found = {}
    for module in vae.modules():
        found.update(OWNER_PADS.get(type(module).__name__, lambda m: {})(module))
        pad = getattr(module, "_padding", None)
        if isinstance(module, _CONVS) and isinstance(pad, (tuple, list)) and len(pad) == 6:
            found[module] = (pad[2], pad[3])
        if isinstance(module, nn.Sequential):
            for before, conv in zip(module, list(module)[1:]):
                if isinstance(before, (nn.ZeroPad2d, nn.ConstantPad2d)) and isinstance(conv, _CONVS):
                    found[conv] = (before.padding[2], before.padding[3])
    return found


def compression(vae: nn.Module) -> int:
    """The encoder's spatial downsampling factor (its input rows are split in multiples of it, so that every stride-2
    conv's windows start where they would on the whole image)."""
    ratio = getattr(vae, "spatial_compression_ratio", None)
    return int(ratio) if ratio else 2 ** (len(vae.config.block_out_channels) - 1)


@dataclass(frozen=True)
class VaeSpec:
    """How one autoencoder class splits by rows.

    Args:
        attention (`tuple[str, ...]`):
            Class names of its modules that attend over the spatial tokens of the split map: their keys and values
            are gathered from every rank. (Attention over time at each location is local and is not listed.)
        prepads (`Callable[[nn.Module], dict]`):
            `{conv: (above, below)}`: rows the conv's owner pads before calling it.
        encode_unit (`Callable[[nn.Module], int]`):
            The multiple of rows an encoder input is split in.
        linear_attention (`tuple[str, ...]`):
            Class names of Sana's multiscale linear attention modules (their key-value sums are all-reduced).
        unchunked (`tuple[str, ...]`):
            Class names of convs whose forward splits its input into chunks by its own size (CogVideoX's
            `CogVideoXSafeConv3d`, over 2 GiB): each band's size differs, so ranks would chunk differently and
            exchange different numbers of halos. Under the split they run as one plain conv (a band is 1/P the size).
        tiles_only (`bool`):
            The class is split only when tiled (its tiles spread over the ranks, `vae_tiles.py`), never by rows:
            diffusers runs Allegro's decode and encode only tiled.
    """

    attention: tuple[str, ...] = ()
    linear_attention: tuple[str, ...] = ()
    unchunked: tuple[str, ...] = ()
    prepads: Callable[[nn.Module], dict[nn.Module, tuple[int, int]]] = standard_prepads
    encode_unit: Callable[[nn.Module], int] = compression
    tiles_only: bool = False
    notes: str = field(default="", compare=False)


SPECS: dict[str, VaeSpec] = {
    "AutoencoderKL": VaeSpec(attention=("Attention",)),
    "AutoencoderKLWan": VaeSpec(attention=("WanAttentionBlock",)),
    "AutoencoderKLQwenImage": VaeSpec(attention=("QwenImageAttentionBlock",)),
    "AutoencoderKLFlux2": VaeSpec(attention=("Attention",)),
    # its mid-block attention is frame-causal: a key-level mask, rebuilt for the gathered keys
    "AutoencoderKLHunyuanVideo": VaeSpec(attention=("Attention",)),
    "AutoencoderKLCogVideoX": VaeSpec(unchunked=("CogVideoXSafeConv3d",)),
    "AutoencoderKLLTXVideo": VaeSpec(),
    # its attention runs over time at each location: local
    # frame-causal attention over each frame's tokens and the frames before (a key-level mask)
    "AutoencoderKLHunyuanVideo15": VaeSpec(attention=("HunyuanVideo15AttnBlock",)),
    # reflect-padded decoder convs: the edge ranks reflect their own rows
    "AutoencoderKLLTX2Video": VaeSpec(),
    "AutoencoderDC": VaeSpec(linear_attention=("SanaMultiscaleLinearAttention",)),
    "AutoencoderKLMochi": VaeSpec(unchunked=("CogVideoXSafeConv3d",)),
    # diffusers 0.42 decodes and encodes it only tiled (its `_decode` raises without tiling): its tiles are spread
    "AutoencoderKLAllegro": VaeSpec(tiles_only=True),
}


# Classes of the planned pipeline families that run whole, and why (the warning and docs/vaes.md name the reason).
NOT_SPLIT: dict[str, str] = {}
