"""Helpers shared by the tiny model families: seeded construction, pretrained-style casting, seeded tensors."""

from collections.abc import Callable, Iterable
from typing import TypeVar

import torch
from diffusers import DiffusionPipeline

T = TypeVar("T")
P = TypeVar("P", bound=DiffusionPipeline)

# The tiny image pipelines' VAE: 2 blocks, so `vae_scale_factor == 2` (and sizes divide by 4 after 2x2 packing).
TWO_BLOCK_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2,
    block_out_channels=(8, 16),
    layers_per_block=1,
    norm_num_groups=4,
)


def seeded(seed: int, build: Callable[[], T]) -> T:
    """Runs ``build`` with the CPU RNG seeded, restoring the global RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):  # devices=[]: do not touch (or initialise) CUDA RNGs
        torch.manual_seed(seed)
        return build()


def cast(model: T, dtype: torch.dtype) -> T:
    """Casts parameters the way `from_pretrained(torch_dtype=dtype)` does and returns the model in eval mode.

    Parameters under the class's `_keep_in_fp32_modules` (e.g. Wan's norms, rope, time embedder) stay float32.
    Plain `model.to(dtype)` would cast them too and logs a warning on every call, even for float32.
    """
    keep = model._keep_in_fp32_modules or []
    for name, param in model.named_parameters():
        param.data = param.data.to(torch.float32 if any(m in name.split(".") for m in keep) else dtype)
    return model.eval()


def build_transformer(cls: type[T], config: dict, overrides: dict, seed: int, dtype: torch.dtype) -> T:
    """`cls(**config, **overrides)` with seeded weights, cast to ``dtype``; overrides replace config values."""
    return cast(seeded(seed, lambda: cls(**{**config, **overrides})), dtype)


def unzero(params: Iterable[torch.nn.Parameter], std: float = 0.05) -> None:
    """Redraw parameters that diffusers starts at zero (a ControlNet's residual projections and condition embedder,
    so that a fresh ControlNet changes nothing), so that what they carry reaches the output in tests."""
    with torch.no_grad():
        for param in params:
            torch.nn.init.normal_(param, std=std)


def quiet(pipe: P) -> P:
    """The pipeline with its progress bar off (tests and ranks other than 0 would print one per call)."""
    pipe.set_progress_bar_config(disable=True)
    return pipe


def randn(gen: torch.Generator, *shape: int, ref: torch.nn.Module) -> torch.Tensor:
    """Standard-normal tensor drawn on CPU from ``gen``, then moved to ``ref``'s device and dtype."""
    return torch.randn(*shape, generator=gen).to(device=ref.device, dtype=ref.dtype)


def embeds(gen: torch.Generator, batch: int, seq: int, dim: int, dtype: torch.dtype) -> torch.Tensor:
    """A `(batch, seq, dim)` stand-in for a text encoder's output, drawn on CPU from ``gen``."""
    return torch.randn(batch, seq, dim, generator=gen).to(dtype)


def padding_mask(batch: int, seq: int, padding: int, dtype: torch.dtype = torch.long) -> torch.Tensor:
    """A `(batch, seq)` text mask as tokenizers return it: 1 for the first `seq - padding` tokens, then 0."""
    return (torch.arange(seq) < seq - padding).to(dtype).expand(batch, seq).clone()
