"""Coverage: every transformer class diffusers exports is either proven equal to its single-process output under
`parallelize` (float32, max abs err <= 1e-5, at each world size of its case) or listed with the reason it is not.
`docs/models.md` is generated from these results: run `python -m pytest tests/test_models.py --update-models-table`.
"""

import functools
from pathlib import Path

import pytest
import torch
import zoo
from tables import check_table
from tasks import core as cases

TABLE = Path(__file__).resolve().parents[1] / "docs" / "models.md"
RESULTS: dict[tuple[str, int], tuple[float, dict[str, int]]] = {}
PARAMS = [(name, world) for name in sorted(zoo.CASES) for world in zoo.CASES[name].worlds]
# (world, ring degree): a ring of 2 or 3 single ranks, and of two Ulysses pairs. (A ring of 4 single ranks adds no path
# per model that these miss: `tests/test_ring.py` runs the ring core at R = 4.)
RINGS = [(2, 2), (3, 3), (4, 2)]
RING_RESULTS: dict[tuple[str, int, int], float] = {}
RING_PARAMS = [(name, w, r) for name in sorted(zoo.CASES) for w, r in RINGS if w in zoo.CASES[name].worlds]


def test_every_case_names_an_exported_class():
    exported = set(zoo.discover())
    assert set(zoo.CASES) <= exported and set(zoo.UNSUPPORTED) <= exported
    assert not set(zoo.CASES) & set(zoo.UNSUPPORTED)


def test_each_class_has_one_plan_module():
    """Catches two family modules registering the same class: `plans/__init__.py` merges them into one dict, so the
    one imported last would silently win."""
    import importlib
    import pkgutil

    import diffusers_usp.plans as plans

    owners: dict[str, list[str]] = {}
    for info in pkgutil.iter_modules(plans.__path__):
        if info.name != "base":
            for name in importlib.import_module(f"{plans.__name__}.{info.name}").PLANS:
                owners.setdefault(name, []).append(info.name)
    assert {name: mods for name, mods in owners.items() if len(mods) > 1} == {}
    assert set(owners) == set(plans.PLANS)


@functools.cache
def _reference(name: str) -> torch.Tensor:
    model, inputs = zoo.build(name)
    with torch.no_grad():
        want = model(**inputs, return_dict=False)[0]
    return torch.stack(want) if isinstance(want, list) else want  # Z-Image returns one tensor per sample


def _max_error(runs: list, want: torch.Tensor) -> float:
    assert all(out.shape == want.shape for out, *_ in runs)
    return max((out - want).abs().max().item() for out, *_ in runs)


@pytest.mark.parametrize("name, world", PARAMS, ids=[f"{n}-{w}" for n, w in PARAMS])
def test_model_parity(pools, name, world):
    """Catches a plan that splits the wrong tensors, misses a per-token tensor (RoPE, ids, masks, timesteps), treats
    cross-attention as sharded or the reverse, or gathers the wrong output."""
    runs = pools(world).run(cases.zoo_run, name)
    err = _max_error(runs, _reference(name))
    RESULTS[(name, world)] = (err, runs[0][1])
    assert err <= 1e-5, f"max abs error {err:.3g}"


@pytest.mark.parametrize("name, world, ring", RING_PARAMS, ids=[f"{n}-{w}-ring{r}" for n, w, r in RING_PARAMS])
def test_model_parity_with_ring(pools, name, world, ring):
    """`parallelize(model, ring_degree=R)`: the same outputs through ring attention, with the collectives it must
    make per sharded attention call: R - 1 point-to-point shifts of key/value blocks, and the Ulysses all-to-all in
    and out inside groups of world // R ranks (none when that is 1). Catches a replicated text block or prefix sent
    around the ring (counted R times), a key mask that does not travel with its block, blocks merged with the wrong
    weights, and ring-major chunk order that differs from the order the sequence was split in."""
    runs = pools(world).run(cases.zoo_run, name, ring)
    err = _max_error(runs, _reference(name))
    _, events, calls = runs[0]
    if zoo.CASES[name].linear:  # one all-reduce per linear attention at any layout (its halo convs send and receive)
        assert calls and events.get("gloo:all_reduce", 0) == calls and "gloo:all_to_all" not in events, events
    else:
        assert events.get("gloo:send", 0) == events.get("gloo:recv", 0) == (ring - 1) * calls, events
        assert events.get("gloo:all_to_all", 0) == (2 * calls if world > ring else 0), events
    RING_RESULTS[(name, world, ring)] = err
    assert err <= 1e-5, f"max abs error {err:.3g}"


def _table() -> str:
    rows = ["| class | status | world sizes | max abs error | with a ring (ring x Ulysses) | all-to-alls / forward "
            "| other collectives / forward |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    names = zoo.discover()
    for name in names:
        if name in zoo.CASES:
            worlds = zoo.CASES[name].worlds
            err = max(RESULTS[(name, w)][0] for w in worlds)
            counts = RESULTS[(name, worlds[0])][1]  # at the smallest world size; the same at every size
            a2a = counts.get("gloo:all_to_all", 0)
            other = ", ".join(
                f"{k.removeprefix('gloo:')} {v}" for k, v in sorted(counts.items()) if "all_to_all" not in k
            )
            rings = [(w, r) for n, w, r in RING_PARAMS if n == name]
            err = max([err] + [RING_RESULTS[(name, w, r)] for w, r in rings])
            ring = ", ".join(f"{r}x{w // r}" for w, r in rings)
            status = f"proven; refused: {zoo.CASES[name].limits}" if zoo.CASES[name].limits else "proven"
            rows.append(
                f"| `{name}` | {status} | {', '.join(map(str, worlds))} | {err:.1e} | {ring} | {a2a} | {other or '0'} |"
            )
        else:
            reason = zoo.UNSUPPORTED.get(name, zoo.NO_PLAN_YET)
            rows.append(f"| `{name}` | not supported: {reason} | | | | | |")
    proven = sum(name in zoo.CASES for name in names)
    head = (
        "# Supported models\n\nGenerated by `tests/test_models.py` (`python -m pytest tests/test_models.py "
        "--update-models-table`); do not edit by hand. *Proven* means: a tiny random-weight instance run under "
        "`diffusers_usp.parallelize` on CPU with gloo equals its single-process output in float32 (max abs error "
        "≤ 1e-5) at each listed world size, and with `parallelize(model, ring_degree=R)` at each listed ring x Ulysses "
        "layout (R x world/R). Collectives (Ulysses only) are counted from profiler events on a steady-state forward "
        "(the first forward adds one all-reduce, the input check).\n\n"
        f"**{proven} of {len(names)} transformer classes proven** "
        f"(diffusers {__import__('diffusers').__version__}).\n\n"
    )
    return head + "\n".join(rows) + "\n"


def test_models_table_is_current(request):
    """Fails if `docs/models.md` is stale: a class added or dropped, a status, world size or collective count
    changed. Needs every parity case of this run."""
    missing = [p for p in PARAMS if p not in RESULTS] + [p for p in RING_PARAMS if p not in RING_RESULTS]
    if missing:
        pytest.skip(f"{len(missing)} parity cases did not run or failed (e.g. {missing[0]}); run the whole file")
    check_table(request, TABLE, _table(), "--update-models-table", measured_column=4)
