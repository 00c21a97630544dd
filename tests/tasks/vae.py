"""Tiny random-weight autoencoders for the VAE split, and the pool task that decodes and encodes them on every rank.

Heights: 23 latent rows (a prime, so every world size splits it unevenly: 12+11, 8+8+7, 6+6+6+5), which keeps the
largest band within 1.15/P of the whole at P = 2, 3 and 4; encoders get 23 blocks of their downsampling factor.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

import diffusers_usp
from diffusers_usp.vae_specs import SPECS

ROWS = 23  # latent rows


@dataclass(frozen=True)
class VaeCase:
    build: Callable[[], torch.nn.Module]
    latent: tuple[int, ...]  # decode input; H = ROWS
    image: tuple[int, ...] | None  # encode input, or None where the class's encode is not split-tested
    worlds: tuple[int, ...] = (2, 3, 4)


def _kl():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(8, 8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
    )


def _wan():
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan(
        base_dim=4, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True],
        latents_mean=[0.0] * 4, latents_std=[1.0] * 4,
    )  # fmt: skip


def _qwenimage():
    from diffusers import AutoencoderKLQwenImage

    return AutoencoderKLQwenImage(
        base_dim=4, z_dim=4, dim_mult=[1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True],
        latents_mean=[0.0] * 4, latents_std=[1.0] * 4,
    )  # fmt: skip


def _flux2():
    from diffusers import AutoencoderKLFlux2

    return AutoencoderKLFlux2(
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(8, 8, 16), layers_per_block=1, latent_channels=4, norm_num_groups=4,
    )  # fmt: skip


def _hunyuan_video():
    from diffusers import AutoencoderKLHunyuanVideo

    return AutoencoderKLHunyuanVideo(
        latent_channels=4, down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4, block_out_channels=(4, 4, 4, 8), layers_per_block=1,
        norm_num_groups=4, spatial_compression_ratio=8, temporal_compression_ratio=4,
    )  # fmt: skip


def _cogvideox():
    from diffusers import AutoencoderKLCogVideoX

    return AutoencoderKLCogVideoX(
        block_out_channels=(8, 8, 8), down_block_types=("CogVideoXDownBlock3D",) * 3,
        up_block_types=("CogVideoXUpBlock3D",) * 3, latent_channels=4, layers_per_block=1, norm_num_groups=2,
        temporal_compression_ratio=2,
    )  # fmt: skip


def _ltx():
    from diffusers import AutoencoderKLLTXVideo

    return AutoencoderKLLTXVideo(
        latent_channels=4, block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False), decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False,) * 5, upsample_residual=(False,) * 4, upsample_factor=(1,) * 4, patch_size=1,
        patch_size_t=1,
    )  # fmt: skip


def _mochi():
    from diffusers import AutoencoderKLMochi

    return AutoencoderKLMochi(
        latent_channels=4, out_channels=3, encoder_block_out_channels=(32, 32, 32, 32),
        decoder_block_out_channels=(32, 32, 32, 32), layers_per_block=(1, 1, 1, 1, 1),
    )  # fmt: skip


def _hunyuan_video15():
    from diffusers import AutoencoderKLHunyuanVideo15

    return AutoencoderKLHunyuanVideo15(
        latent_channels=4, block_out_channels=(8, 8, 16, 16), layers_per_block=1, spatial_compression_ratio=8,
        temporal_compression_ratio=4,
    )  # fmt: skip


def _ltx2():
    from diffusers import AutoencoderKLLTX2Video

    return AutoencoderKLLTX2Video(
        latent_channels=4, block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1), patch_size=1,
        upsample_residual=(False,) * 3, upsample_factor=(1, 1, 1),
    )  # fmt: skip


def _dc():
    from diffusers import AutoencoderDC

    blocks = ("ResBlock", "EfficientViTBlock", "EfficientViTBlock")
    return AutoencoderDC(
        latent_channels=4, attention_head_dim=2, encoder_block_types=blocks, decoder_block_types=blocks,
        encoder_block_out_channels=(8, 8, 8), decoder_block_out_channels=(8, 8, 8),
        encoder_qkv_multiscales=((), (5,), (5,)), decoder_qkv_multiscales=((), (5,), (5,)),
        encoder_layers_per_block=(1, 1, 1), decoder_layers_per_block=(1, 1, 1),
    )  # fmt: skip


def _allegro():
    from .vae_tiles import allegro

    return allegro()


CASES: dict[str, VaeCase] = {
    "AutoencoderKL": VaeCase(_kl, (1, 4, ROWS, 5), (1, 3, 4 * ROWS, 20)),
    # an encoder input that is no multiple of the downsampling factor: the last band takes the 2 extra rows
    "AutoencoderKL (90 rows)": VaeCase(_kl, (1, 4, ROWS, 5), (1, 3, 90, 20)),
    "AutoencoderKLWan": VaeCase(_wan, (1, 4, 2, ROWS, 4), (1, 3, 5, 8 * ROWS, 32)),
    "AutoencoderKLQwenImage": VaeCase(_qwenimage, (1, 4, 1, ROWS, 4), (1, 3, 1, 4 * ROWS, 16)),
    "AutoencoderKLFlux2": VaeCase(_flux2, (1, 4, ROWS, 5), (1, 3, 4 * ROWS, 20)),
    "AutoencoderKLHunyuanVideo": VaeCase(_hunyuan_video, (1, 4, 2, ROWS, 4), (1, 3, 5, 8 * ROWS, 16)),
    "AutoencoderKLCogVideoX": VaeCase(_cogvideox, (1, 4, 2, ROWS, 4), (1, 3, 3, 4 * ROWS, 16)),
    "AutoencoderKLHunyuanVideo15": VaeCase(_hunyuan_video15, (1, 4, 2, ROWS, 4), (1, 3, 5, 8 * ROWS, 16)),
    "AutoencoderKLLTX2Video": VaeCase(_ltx2, (1, 4, 2, ROWS, 4), (1, 3, 9, 8 * ROWS, 16)),
    "AutoencoderDC": VaeCase(_dc, (1, 4, ROWS, 5), (1, 3, 4 * ROWS, 20)),
    "AutoencoderKLMochi": VaeCase(_mochi, (1, 4, 1, ROWS, 2), (1, 3, 1, 8 * ROWS, 16)),
    "AutoencoderKLLTXVideo": VaeCase(_ltx, (1, 4, 2, ROWS, 4), (1, 3, 9, 4 * ROWS, 16)),
    # tiled only (diffusers raises without tiling): 2 x 3 x 2 = 12 tiles of one size (decode: 3 latent frames, 8 x 6
    # latents; encode: 6 frames of 16 x 12), its tiles spread over the ranks
    "AutoencoderKLAllegro": VaeCase(_allegro, (1, 4, 3, 8, 6), (1, 3, 6, 16, 12)),
}


def build(name: str) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor | None]:
    """The case's autoencoder (seeded weights, float32, eval) and its decode and encode inputs."""
    case = CASES[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vae = case.build().eval()
        latent = torch.randn(case.latent)
        image = torch.rand(case.image) * 2 - 1 if case.image is not None else None
    return vae, latent, image


def _tensor(out) -> torch.Tensor:
    out = out[0] if isinstance(out, tuple) else out
    return getattr(out, "parameters", out)  # a DiagonalGaussianDistribution's moments


def run(name: str, split: bool) -> tuple[np.ndarray, np.ndarray | None, dict[str, int]]:
    """`(decoded, encoded moments, {conv path: output elements this rank computed})`."""
    vae, latent, image = build(name)
    if split:
        diffusers_usp.parallelize(vae)
    work: dict[str, int] = {}
    # A class split through its tiles spreads the decoder's and encoder's calls; the 1x1 quant convs its tile loop
    # runs around them run on every rank (and twice), so they are not counted.
    tiles_only = SPECS[type(vae).__name__].tiles_only
    for path, module in vae.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Conv3d)) and not (tiles_only and "quant_conv" in path):
            module.register_forward_hook(functools.partial(_count, work, path))
    with torch.no_grad():
        decoded = _tensor(vae.decode(latent, return_dict=False)).numpy()
        encoded = _tensor(vae.encode(image, return_dict=False)).numpy() if image is not None else None
    return decoded, encoded, work


def _count(work: dict[str, int], path: str, module, args, out) -> None:
    if not out.is_meta:  # real outputs only: a tile's shape probe runs on the meta device, computing nothing
        work[path] = work.get(path, 0) + out.numel()


def vae_run(names: list[str]) -> dict[str, tuple]:
    """The pool task: every named case on this rank, split across the pool."""
    return {name: run(name, split=True) for name in names}


def _decode_np(vae, latent) -> np.ndarray:
    with torch.no_grad():
        return _tensor(vae.decode(latent, return_dict=False)).numpy()


def fallback_run() -> dict[str, tuple[np.ndarray, np.ndarray, bool]]:
    """The pool task of the fallbacks: `{case: (split run, one-process run, warned)}` for a class without a spec
    (AutoencoderTiny) and a VAE after `remove_parallelism` (its "warning" is that no wrapper is left). Tiling on
    spreads the tiles: `tasks/vae_tiles.py`."""
    import warnings

    from diffusers import AutoencoderTiny

    out = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        tiny = AutoencoderTiny(
            encoder_block_out_channels=(8, 8), decoder_block_out_channels=(8, 8), num_encoder_blocks=(1, 1),
            num_decoder_blocks=(1, 1), latent_channels=4, upsampling_scaling_factor=2,
        ).eval()  # fmt: skip
    latent = torch.randn(1, 4, ROWS, 5)
    want = _decode_np(tiny, latent)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        diffusers_usp.parallelize(tiny)
    out["class without a spec"] = (_decode_np(tiny, latent), want, any("whole" in str(w.message) for w in caught))

    vae, latent, _ = build("AutoencoderKLWan")
    want = _decode_np(vae, latent)
    diffusers_usp.remove_parallelism(diffusers_usp.parallelize(vae))
    hooked = [m for m in vae.modules() if "_conv_forward" in vars(m) or getattr(m, "_diffusers_hook", None)]
    clean = not any("_conv_forward" in vars(m) or m._diffusers_hook.hooks for m in hooked)
    out["removed"] = (_decode_np(vae, latent), want, clean and "_decode" not in vars(vae))
    return out


def cfg_pipelines_run(names: list[str]) -> dict[str, tuple[np.ndarray, int]]:
    """The pool task: `{pipeline: (guided output, VAE convs' output elements on this rank)}`, each pipeline
    parallelized with `cfg_degree=2` and its VAE split over all ranks (both CFG halves)."""
    return {name: cfg_pipeline_run(name, split=True) for name in names}


def cfg_pipeline_run(name: str, split: bool) -> tuple[np.ndarray, int]:
    """A guided pipeline call (`cfg_degree=2` if `split`) and its VAE convs' output elements on this rank."""
    from . import cfg as cfg_cases

    pipe = cfg_cases.PIPELINES[name][0]()
    if split:
        diffusers_usp.parallelize(pipe, cfg_degree=2)
    work = [0]
    for module in pipe.vae.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Conv3d)):
            module.register_forward_hook(lambda m, a, o: work.__setitem__(0, work[0] + o.numel()))
    return cfg_cases.run_pipeline(name, True, pipe), work[0]
