"""What the VAE split needs to know about each autoencoder class, as data: which of its modules attend over the
split rows, which convs are padded by their owner before they run (and by how many rows above and below), and the
multiple of rows an encoder's input is split in. A class is listed here only once it is proven equal to one process
at 2, 3 and 4 ranks (tests/test_vae.py, docs/vaes.md); any other runs whole on every rank."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

_CONVS = (nn.Conv2d, nn.Conv3d)


def standard_prepads(vae: nn.Module) -> dict[nn.Module, tuple[int, int]]:
    """`{conv: (rows padded above, rows padded below)}` for the owner-padded convs of diffusers' autoencoders:
    - causal convs that keep their padding in `_padding` (W, W, H, H, T, T) and pad in their forward (Wan, Qwen-Image);
    - a conv right after a `ZeroPad2d`/`ConstantPad2d` in an `nn.Sequential` (Wan's stride-2 downsamplers);
    - `Downsample2D` with `padding=0`, which pads one row below before its stride-2 conv (AutoencoderKL's encoder)."""
    found = {}
    for module in vae.modules():
        pad = getattr(module, "_padding", None)
        if isinstance(module, _CONVS) and isinstance(pad, (tuple, list)) and len(pad) == 6:
            found[module] = (pad[2], pad[3])
        if isinstance(module, nn.Sequential):
            for before, conv in zip(module, list(module)[1:]):
                if isinstance(before, (nn.ZeroPad2d, nn.ConstantPad2d)) and isinstance(conv, _CONVS):
                    found[conv] = (before.padding[2], before.padding[3])
        if type(module).__name__ == "Downsample2D" and module.use_conv and module.padding == 0:
            found[module.conv] = (0, 1)
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
    """

    attention: tuple[str, ...] = ()
    prepads: Callable[[nn.Module], dict[nn.Module, tuple[int, int]]] = standard_prepads
    encode_unit: Callable[[nn.Module], int] = compression
    notes: str = field(default="", compare=False)


SPECS: dict[str, VaeSpec] = {
    "AutoencoderKL": VaeSpec(attention=("Attention",)),
    "AutoencoderKLWan": VaeSpec(attention=("WanAttentionBlock",)),
    "AutoencoderKLQwenImage": VaeSpec(attention=("QwenImageAttentionBlock",)),
}


def split_classes() -> list[str]:
    """The autoencoder classes `parallelize` splits."""
    return sorted(SPECS)
