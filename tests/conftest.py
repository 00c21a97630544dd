import os
import sys

import pytest

# One compile thread in this process and every process it starts (pool ranks, launches, kernels): Inductor then
# compiles in the calling process instead of starting a pool of workers, each importing torch again. Set before torch
# is imported anywhere, since Inductor reads it once.
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

sys.path.insert(0, os.path.dirname(__file__))  # spawned ranks import the task modules by name

from pool import RankPool  # noqa: E402

_POOLS: dict[int, RankPool] = {}


def pytest_addoption(parser):
    parser.addoption("--update-models-table", action="store_true", help="rewrite docs/models.md from this run")
    parser.addoption("--update-works-with-table", action="store_true", help="rewrite docs/works_with.md from this run")


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device; skipped where none is present")


def pytest_collection_modifyitems(config, items):
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def pools():
    """`pools(P)`: the session's gloo pool of P ranks, (re)started on demand."""

    def get(world: int) -> RankPool:
        pool = _POOLS.get(world)
        if pool is None or not pool.alive:
            pool = _POOLS[world] = RankPool(world)
        return pool

    yield get
    for pool in _POOLS.values():  # all ranks of all pools wind down at once, not one pool after another
        pool.stop()
    for pool in _POOLS.values():
        pool.close()
