"""The benchmark scripts as modules, so that the harness test runs `benchmarks/run.py`'s `main` on the ranks of a test
pool (its multi-process path, as under `accelerate launch`) and in the test process, without starting Python again."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@functools.cache
def load(name: str) -> ModuleType:
    """`benchmarks/<name>.py` as a module; run as a script, it puts this checkout and `benchmarks/` on `sys.path`."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # registered first: dataclasses look it up
    spec.loader.exec_module(module)
    return module


def weights(argv: list[str]) -> None:
    """`python benchmarks/weights.py <argv>` on this rank."""
    with contextlib.redirect_stdout(io.StringIO()):
        load("weights").main(argv)


def run(argv: list[str]) -> str:
    """`python benchmarks/run.py <argv>` on this rank; returns what it printed (rank 0 logs, the others print only
    failures)."""
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        load("run").main(argv)
    return printed.getvalue()
