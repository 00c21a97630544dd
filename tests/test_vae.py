"""The VAE split: every autoencoder class in `vae_specs.SPECS` decodes and encodes across 2, 3 and 4 gloo ranks
exactly as one process does (float32, max abs error <= 1e-4), each rank computing at most 1.15/P of every conv's
output. `docs/vaes.md` is generated from these results: `python -m pytest tests/test_vae.py --update-models-table`.
"""

import functools
from pathlib import Path

import numpy as np
import pytest
from tables import check_table
from tasks import vae as vae_cases

from diffusers_usp.vae_specs import NOT_SPLIT, SPECS

TABLE = Path(__file__).resolve().parents[1] / "docs" / "vaes.md"
WORLDS = (2, 3, 4)
RESULTS: dict[tuple[str, int], tuple[float, float | None, float]] = {}  # (case, world): (decode, encode, work * P)
# GroupNorm's statistics are summed in another order (per rank, then merged); the decoders amplify that to ~2e-6.
TOL = 1e-4


@functools.cache
def _reference(name: str):
    decoded, encoded, work = vae_cases.run(name, split=False)
    assert np.abs(decoded - decoded.mean()).max() > 0.05, f"{name}: a constant decode would prove nothing"
    return decoded, encoded, work


@pytest.mark.parametrize("world", WORLDS)
def test_vae_split_equals_one_process(pools, world):
    """Catches a halo of the wrong size or from the wrong side (a seam at every split), an owner's padding applied
    at an interior split (Wan's causal convs, the stride-2 downsamplers' one row below), a GroupNorm normalized by
    its own band's statistics, a spatial attention that sees only its band's keys, an encoder split off its
    downsampling grid, uneven bands (23 rows never divide evenly) gathered in the wrong places, and a rank
    computing more than its share of a conv (halo rows recomputed as output, or a whole-run fallback)."""
    names = [name for name, case in vae_cases.CASES.items() if world in case.worlds]
    runs = pools(world).run(vae_cases.vae_run, names)
    failures = []
    for name in names:
        want_dec, want_enc, want_work = _reference(name)
        dec = max(_err(rank[name][0], want_dec) for rank in runs)
        enc = max(_err(rank[name][1], want_enc) for rank in runs) if want_enc is not None else None
        # each rank's share of the conv with the largest share; all ranks together compute each conv's output once
        work = max(rank[name][2].get(p, 0) / n for rank in runs for p, n in want_work.items()) * world
        assert all(sum(rank[name][2].get(p, 0) for rank in runs) == n for p, n in want_work.items()), name
        RESULTS[(name, world)] = (dec, enc, work)
        if dec > TOL or (enc or 0) > TOL or work > 1.15:
            failures.append(f"{name}: decode {dec:.3g}, encode {enc}, work x P {work:.3f}")
    assert not failures, failures


def test_vae_split_over_both_cfg_halves(pools):
    """`cfg_degree=2` at 4 ranks: after the last step both CFG halves hold the same latents, so the VAE splits over
    all 4 ranks. Catches halves that hold different latents (the VAE's input check raises on every rank) or a VAE
    split over one half only (each rank would decode half the image, not a quarter), in a batched-CFG pipeline (SD3)
    and a two-call one (Wan)."""
    names = ["sd3", "wan"]
    runs = pools(4).run(vae_cases.cfg_pipelines_run, names)
    for name in names:
        want, work = vae_cases.cfg_pipeline_run(name, split=False)
        assert all(np.abs(rank[name][0] - want).max() <= TOL for rank in runs), name
        assert sum(rank[name][1] for rank in runs) == work, name  # each conv output once over all 4 ranks
        assert max(rank[name][1] for rank in runs) <= 1.15 / 4 * work, name


def test_every_split_class_has_a_case():
    assert {name.split()[0] for name in vae_cases.CASES} == set(SPECS)


def _err(got, want) -> float:
    assert got.shape == want.shape, (got.shape, want.shape)
    return float(np.abs(got - want).max())


def test_vae_split_fallbacks_and_removal(pools):
    """A class without a spec runs whole, with a warning given once, and equals one process (never a seam or a
    hang); `remove_parallelism` leaves no wrapper behind and the VAE as it was."""
    from tasks import vae as cases

    for rank in pools(2).run(cases.fallback_run):
        for name, (got, want, warned) in rank.items():
            assert warned, name
            assert np.array_equal(got, want), name


def _table() -> str:
    rows = ["| class | world sizes | decode: max abs error | encode: max abs error | largest conv share x P |",
            "|---|---|---|---|---|"]  # fmt: skip
    for name in sorted(vae_cases.CASES):
        res = [RESULTS[(name, w)] for w in vae_cases.CASES[name].worlds]
        enc = [r[1] for r in res if r[1] is not None]
        rows.append(
            f"| `{name}` | {', '.join(map(str, vae_cases.CASES[name].worlds))} | {max(r[0] for r in res):.1e} | "
            f"{f'{max(enc):.1e}' if enc else 'not split-tested'} | {max(r[2] for r in res):.3f} |"
        )
    rows += [f"| `{name}` | not split: {reason} | | | |" for name, reason in sorted(NOT_SPLIT.items())]
    head = (
        "# Split VAEs\n\nGenerated by `tests/test_vae.py` (`python -m pytest tests/test_vae.py --update-models-table`);"
        " do not edit by hand. `diffusers_usp.parallelize(pipe)` splits the pipeline's VAE by rows across all ranks "
        "(its decode and encode); each class below is proven on CPU with gloo: a tiny random-weight instance equals "
        "its single-process output in float32 (max abs error ≤ 1e-4) at each listed world size, at uneven heights "
        "(23 latent rows), and no rank computes more than 1.15/P of any conv's output elements (the last column, "
        "the largest share times P, over all convs and ranks). `AutoencoderKLAllegro`, which diffusers decodes and "
        "encodes only tiled, is split through its tiles (12 of them), exactly as under tiling below. Any other "
        "autoencoder class (audio VAEs included) runs whole on every rank, with a warning given once. Peak activation "
        "memory of a decode per rank, measured on CPU: benchmarks/NOTES.md, section 12.\n\n"
        "**Tiling** (`enable_tiling()`) spreads the tiles over the ranks instead (`diffusers_usp/vae_tiles.py`): each "
        "rank computes every P-th tile (a tile chained by a causal cache, CogVideoX's frame batches or Wan's frames, "
        "stays on one rank), the tiles are all-gathered once, and every rank blends them with diffusers' own tiled "
        "code, so the result equals one process's tiled output bit for bit (`tests/test_vae_tiles.py`: "
        "`AutoencoderKL`, `AutoencoderKLCogVideoX` at 2, 3 and 4 ranks, `AutoencoderKLWan` at 3, 8 tiles; "
        "`AutoencoderKLHunyuanVideo` tiled over frames and space at 3, 32 tiles; "
        "Allegro above; checked once, outside the suite, at 3 ranks: Flux.2, DC, HunyuanVideo and 1.5, LTX, LTX-2, "
        "Mochi and Qwen-Image, all bit-exact). An input under one tile is split by rows, and so is each temporal tile "
        "of a class that tiles only frames at that size (HunyuanVideo's and LTX's framewise decoding; checked once at "
        "3 ranks: HunyuanVideo within 1e-5). Cost: each rank "
        "holds every decoded tile until the blend, as diffusers' tiled loop does on one process, plus its own tiles "
        "during the all-gather; the loop runs twice (the second time only blending), the 1x1 quant convs around each "
        "tile run on every rank, and a tile of a shape a rank has not computed yet runs once on the meta device for "
        "its output's shape (at most two per distinct tile shape, Python time only). Any error in a rank's tiles "
        "is raised on every rank. Tiles that draw random numbers (LTX's decoder noise) run whole on every rank, "
        "with a warning given once: one process draws each tile's noise in turn, which only a whole run repeats.\n\n"
        f"**{len(SPECS)} classes split** (diffusers {__import__('diffusers').__version__}).\n\n"
    )
    return head + "\n".join(rows) + "\n"


def test_vaes_table_is_current(request):
    """Fails if `docs/vaes.md` is stale: a class added or dropped, or its world sizes or conv shares changed."""
    missing = [(n, w) for n, c in vae_cases.CASES.items() for w in c.worlds if (n, w) not in RESULTS]
    if missing:
        pytest.skip(f"{len(missing)} cases did not run or failed (e.g. {missing[0]}); run the whole file")
    check_table(request, TABLE, _table(), "--update-models-table", measured_column=(3, 4))
