"""The notebooks, executed top to bottom the way a reader runs them, so that none can rot unnoticed.

Each runs in a fresh Jupyter kernel of this interpreter, launches its processes with `accelerate.notebook_launcher`
(forked from the kernel, gloo on the CPU) and prints one parity line that compares them with a single process.
"""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

from diffusers_usp import notebook_launch

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ("quickstart", "how_it_works", "video")
CELL_TIMEOUT = 300  # seconds; a cell takes a few on 2 cores, so only a hang gets near this
# The parity cell's line, e.g. "max abs difference, 2 processes vs 1 process: 7.75e-07".
PARITY = re.compile(r"max abs difference, \d+ processes vs 1 process: (\S+)")
# Outputs in [0, 1] (images) or of a tiny transformer, float32: the runs differ only by reassociated sums, ~1e-6.
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def kernel_dirs(tmp_path_factory) -> list[str]:
    """A kernelspec that runs this interpreter, whatever `python3` kernel the machine has installed."""
    spec = tmp_path_factory.mktemp("kernels") / "usp-test"
    spec.mkdir()
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "usp-test", "language": "python"}))
    return [str(spec.parent)]


def test_every_notebook_is_tested():
    """Catches a notebook added to notebooks/ that this file does not execute."""
    assert sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_and_matches_one_process(name, kernel_dirs, tmp_path, monkeypatch):
    """Catches a notebook that no longer runs (an API it calls changed, notebook_launcher's CPU path broke), that
    shows no picture, or whose parallel result drifted from the single-process one."""
    # Connection files and IPython's profile go to the test's own directory, not the user's home.
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    km = AsyncKernelManager(kernel_name="usp-test", kernel_spec_manager=KernelSpecManager(kernel_dirs=kernel_dirs))
    client = NotebookClient(nb, km=km, timeout=CELL_TIMEOUT, resources={"metadata": {"path": str(ROOT / "notebooks")}})
    # The kernel imports diffusers_usp from this checkout, installed or not.
    client.execute(env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])})

    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    assert any("image/png" in out.get("data", {}) for out in outputs), "no figure was displayed"
    printed = "".join(out.text for out in outputs if out.output_type == "stream" and out.name == "stdout")
    found = PARITY.findall(printed)
    assert len(found) == 1, f"expected one parity line, found {found}"
    assert float(found[0]) <= TOLERANCE, found[0]


LAUNCH_SCRIPT = textwrap.dedent("""
    import os, sys
    import torch
    import torch.distributed as dist
    from diffusers_usp import notebook_launch

    def each(out_dir, offset):
        dist.init_process_group("gloo")
        x = torch.tensor([float(dist.get_rank() + offset)])
        dist.all_reduce(x)
        with open(os.path.join(out_dir, str(dist.get_rank())), "w") as f:
            f.write(f"{dist.get_world_size()} {x.item()}")
        dist.destroy_process_group()

    for _ in range(2):  # twice from one process, as a notebook does: each launch needs its own port
        notebook_launch(each, sys.argv[1], 10, num_processes=3)
""")


def test_notebook_launch_runs_a_gloo_group_twice(tmp_path):
    """Catches a `notebook_launch` that drops the arguments, starts the wrong number of processes, leaves them
    without a working process group, or cannot launch a second time from the same process (a held port)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", LAUNCH_SCRIPT, str(tmp_path)], env=env, check=True, timeout=CELL_TIMEOUT)
    written = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert written == {str(r): "3 33.0" for r in range(3)}  # (0 + 1 + 2) + 3 * 10


def test_notebook_launch_refuses_no_processes():
    """Catches a launch of zero processes that would return without running anything."""
    with pytest.raises(ValueError, match="num_processes must be at least 1"):
        notebook_launch(print, num_processes=0)
