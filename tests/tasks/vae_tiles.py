"""Tiled VAEs (`enable_tiling()`) with their tiles spread over the ranks: the tiny autoencoders of `tasks/vae.py` with
small tiles, and the pool task that decodes and encodes them on every rank.

Latents of 10 x 6 rows and columns under tiles of 4 latent rows with a stride of 3 (in sample space: 32 with a
stride of 24, at a compression of 8): 4 x 2 = 8 tiles, which 3 ranks share unevenly (3, 3, 2).
"""

from __future__ import annotations

import numpy as np
import torch

import diffusers_usp
from diffusers_usp.vae_specs import compression

from . import vae as vae_cases

LATENT_HW = (10, 6)
# Classes whose tiled loop we spread, with what is special about each: the default is a stateless call per tile.
CLASSES = {
    "AutoencoderKL": "tiles of tile_latent_min_size, blended by blend_v/blend_h",
    "AutoencoderKLCogVideoX": "each tile decoded in frame batches chained by `conv_cache=`",
    "AutoencoderKLWan": "each tile decoded frame by frame, chained by `feat_cache=` (the cache in the VAE)",
    # 4 latent frames (13 encoded) under temporal tiles of 2 latent frames, stride 1: each temporal tile is tiled
    # spatially inside (`_temporal_tiled_decode` calls `tiled_decode`), every call one tile of frames and space
    "AutoencoderKLHunyuanVideo (frames)": "tiles over frames and space, a frame-causal attention in every tile",
}
# AutoencoderKLAllegro, tiled only, is in `tasks/vae.py`'s cases (docs/vaes.md's table): 12 tiles over frames, rows and
# columns, blended by adding weighted tiles.


def allegro():
    """A tiny Allegro VAE whose tiles (kernel 4 x 8 x 8 samples, stride 2 x 4 x 4) fit a tiny video."""
    from diffusers import AutoencoderKLAllegro

    vae = AutoencoderKLAllegro(
        down_block_types=("AllegroDownBlock3D",) * 2, up_block_types=("AllegroUpBlock3D",) * 2,
        block_out_channels=(8, 8), temporal_downsample_blocks=(True, False), temporal_upsample_blocks=(False, True),
        latent_channels=4, layers_per_block=1, norm_num_groups=4, temporal_compression_ratio=2, sample_size=8,
    )  # fmt: skip
    vae.use_tiling = True  # diffusers decodes and encodes it only tiled
    vae.kernel, vae.stride = (4, 8, 8), (2, 4, 4)
    return vae


def tile(vae: torch.nn.Module) -> None:
    """Tiling on, with tiles of 32 samples and a stride of 24 (a quarter overlaps), in each class's own attributes."""
    vae.use_tiling = True
    ratio = compression(vae)
    if hasattr(vae, "tile_sample_stride_height"):  # Wan, HunyuanVideo, LTX, Mochi, DC, ...
        vae.tile_sample_min_height = vae.tile_sample_min_width = 4 * ratio
        vae.tile_sample_stride_height = vae.tile_sample_stride_width = 3 * ratio
        for name in ("tile_latent_min_height", "tile_latent_min_width"):
            if hasattr(vae, name):
                setattr(vae, name, 4)
    elif hasattr(vae, "tile_latent_min_height"):  # CogVideoX, HunyuanVideo 1.5: overlap factors
        vae.tile_sample_min_height = vae.tile_sample_min_width = 4 * ratio
        vae.tile_latent_min_height = vae.tile_latent_min_width = 4
        for name in ("tile_overlap_factor_height", "tile_overlap_factor_width", "tile_overlap_factor"):
            if hasattr(vae, name):
                setattr(vae, name, 0.25)
        if hasattr(vae, "num_latent_frames_batch_size"):  # CogVideoX: frame batches of 1 latent frame
            vae.num_latent_frames_batch_size = 1
    else:  # AutoencoderKL, Flux2: one square size
        vae.tile_sample_min_size, vae.tile_latent_min_size, vae.tile_overlap_factor = 4 * ratio, 4, 0.25


def build(name: str) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """The case's tiled autoencoder and its decode and encode inputs (10 x 6 latent rows and columns)."""
    vae, latent, image = vae_cases.build(name.split()[0])
    tile(vae)
    ratio = compression(vae)
    frames = name.endswith("(frames)")
    if frames:
        vae.tile_sample_min_num_frames, vae.tile_sample_stride_num_frames = 8, 4
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        latent = torch.randn(*latent.shape[:2], *((4,) if frames else latent.shape[2:-2]), *LATENT_HW)
        image_frames = (13,) if frames else image.shape[2:-2]
        image = torch.rand(*image.shape[:2], *image_frames, LATENT_HW[0] * ratio, LATENT_HW[1] * ratio) * 2 - 1
    return vae, latent, image


def run(name: str, split: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """`(decoded, encoded moments, conv output elements this rank computed)`, tiled."""
    vae, latent, image = build(name)
    if split:
        diffusers_usp.parallelize(vae)
    work = [0]

    def count(module, args, out):  # real outputs only: a shape probe runs on the meta device and computes nothing
        if not out.is_meta:
            work[0] += out.numel()

    # the convs of the per-tile calls; the 1x1 quant convs the loop runs around them run on every rank, and twice
    for module in [*vae.decoder.modules(), *vae.encoder.modules()]:
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Conv3d)):
            module.register_forward_hook(count)
    with torch.no_grad():
        decoded = vae_cases._tensor(vae.decode(latent, return_dict=False)).numpy()
        encoded = vae_cases._tensor(vae.encode(image, return_dict=False)).numpy()
    return decoded, encoded, work[0]


def tiles_run(names: list[str]) -> dict[str, tuple]:
    """The pool task: every named case on this rank, its tiles spread over the pool."""
    return {name: run(name, split=True) for name in names}


def failing_tile_run() -> str:
    """The pool task: a tiled decode whose decoder fails on rank 1 only (one of its tiles). Every rank must raise,
    none may wait in the gather for it."""
    vae, latent, _ = build("AutoencoderKL")
    diffusers_usp.parallelize(vae)
    if torch.distributed.get_rank() == 1:
        vae.decoder.conv_in.weight.data = vae.decoder.conv_in.weight.data[:, :2]  # a wrong channel count: raises
    return _decode_error(vae, latent)


def _decode_error(vae: torch.nn.Module, latent: torch.Tensor) -> str:
    """The message of the RuntimeError `vae.decode(latent)` raises, or "no error"."""
    try:
        with torch.no_grad():
            vae.decode(latent)
    except RuntimeError as error:
        return str(error)
    return "no error"


def under_one_tile_run() -> tuple[np.ndarray, int]:
    """The pool task: an AutoencoderKL with tiling on and an input under one tile (23 x 5 latents, tiles of 32): its
    decode and the conv output elements this rank computed."""
    vae, latent, _ = vae_cases.build("AutoencoderKL")
    vae.use_tiling, vae.tile_latent_min_size, vae.tile_sample_min_size = True, 32, 128
    if torch.distributed.is_initialized():
        diffusers_usp.parallelize(vae)
    work = [0]
    for module in vae.decoder.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Conv3d)):
            module.register_forward_hook(lambda m, a, out: work.__setitem__(0, work[0] + out.numel()))
    with torch.no_grad():
        return vae_cases._tensor(vae.decode(latent, return_dict=False)).numpy(), work[0]


def feedback_run() -> str:
    """The pool task: an AutoencoderKL whose tiled decode (replaced on the instance) cuts its second tile's input from
    its first tile's output. Every rank must refuse: a rank that did not compute the first tile fed its placeholder
    to the second."""
    from diffusers.models.autoencoders.vae import DecoderOutput

    vae, latent, _ = build("AutoencoderKL")
    diffusers_usp.parallelize(vae)

    def tiled_decode(z, return_dict=True):
        first = vae.decoder(z[:, :, :4, :4])
        second = vae.decoder(z[:, :, 4:8, :4] + first.mean())
        return DecoderOutput(sample=torch.cat([first, second], dim=2))

    vae.tiled_decode = tiled_decode
    return _decode_error(vae, latent)


def few_tiles_run() -> tuple[np.ndarray, int]:
    """The pool task: an AutoencoderKL decode of 2 tiles (5 x 3 latents, tiles of 4 rows with a stride of 3), fewer
    than the ranks: its decode and the decoder conv output elements this rank computed."""
    vae, _, _ = build("AutoencoderKL")
    latent = torch.randn(1, 4, 5, 3, generator=torch.Generator().manual_seed(2))
    if torch.distributed.is_initialized():
        diffusers_usp.parallelize(vae)
    work = [0]
    for module in vae.decoder.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Conv3d)):
            module.register_forward_hook(
                lambda m, a, out: work.__setitem__(0, work[0] + (not out.is_meta) * out.numel())
            )
    with torch.no_grad():
        return vae_cases._tensor(vae.decode(latent, return_dict=False)).numpy(), work[0]


def noisy_run() -> tuple[np.ndarray, bool]:
    """The pool task: a tiled LTX decode whose decoder injects noise (drawn from the global generator, tile after
    tile): `(decoded, warned)`, seeded alike on every rank."""
    import warnings

    from diffusers import AutoencoderKLLTXVideo

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vae = AutoencoderKLLTXVideo(
            latent_channels=4, block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
            layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1, 1),
            spatio_temporal_scaling=(True, True, False, False),
            decoder_spatio_temporal_scaling=(True, True, False, False), decoder_inject_noise=(True,) * 5,
            upsample_residual=(False,) * 4, upsample_factor=(1,) * 4, patch_size=1, patch_size_t=1,
        ).eval()  # fmt: skip
        latent = torch.randn(1, 4, 2, *LATENT_HW)
    tile(vae)
    if torch.distributed.is_initialized():
        diffusers_usp.parallelize(vae)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        torch.manual_seed(5)
        decoded = vae_cases._tensor(vae.decode(latent, return_dict=False)).numpy()
    return decoded, any("draw random numbers" in str(w.message) for w in caught)
