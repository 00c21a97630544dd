"""Real pipelines end to end under `accelerate launch`, compared with the same pipelines run in one process."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tasks import launched

ROOT = Path(__file__).resolve().parents[1]


def _launch(world: int, *argv: str) -> subprocess.CompletedProcess:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", f"--num_processes={world}"]
    cmd = [
        *launch,
        "--num_machines=1",
        "--mixed_precision=no",
        "--dynamo_backend=no",
        f"--main_process_port={port}",
        *argv,
    ]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def launched_2(tmp_path_factory) -> Path:
    """One `accelerate launch --multi_gpu --num_processes 2` of `tests/tasks/launched.py`: every pipeline family, then
    every example's `main`, their outputs in the returned folder (the examples' in its `examples/`). One launch
    instead of ten: each imports torch and diffusers again on both ranks."""
    out = tmp_path_factory.mktemp("launched")
    result = _launch(2, str(ROOT / "tests" / "tasks" / "launched.py"), str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def test_pipelines_under_accelerate_launch_equal_single_process(launched_2):
    """The user's path: `accelerate launch` on CPU, `PartialState`, `parallelize(pipe)`, several denoising steps through
    the real scheduler and VAE, for every tiny family (Flux, Flux ControlNet plain, union and multi, Wan, SD3, SD3
    ControlNet, CogVideoX, Qwen-Image and its ControlNet, LTX, LTX-2, HunyuanVideo, HunyuanVideo 1.5, Sana, Chroma) in
    one launch. Catches anything the transformer-level tests miss: the pipeline's own per-step inputs (timesteps, ids,
    guidance, CogVideoX's rotary table, the text masks of LTX, Qwen-Image and HunyuanVideo, Chroma's padding vector over
    text and image, HunyuanVideo 1.5's per-query mask), CFG batches, Qwen-Image's and Chroma's two forwards per step
    with different text lengths (one sharded, one replicated), ControlNet residuals gathered and split again, a union
    ControlNet's mode token, a hook that breaks across repeated calls, ranks that diverge."""
    for name in launched.FAMILIES:
        expected = launched.run(name, launched.build(name))
        got = np.load(launched_2 / f"{name}.npy")
        assert got.shape == expected.shape, name
        assert np.abs(got - expected).max() <= 1e-5, name
        assert np.abs(expected - expected.mean()).max() > 0.05, f"{name}: a constant output would prove nothing"
    # The ControlNets ran split too: 72 of the 144 image tokens on each rank, once in each of the 2 steps (SD3's CFG
    # is one batch of 2; Qwen-Image's true CFG reuses the residuals of the prompt's pass).
    tokens = json.loads((launched_2 / "controlnet_tokens.json").read_text())
    assert tokens == {name: [72, 72] if "controlnet" in name else [] for name in launched.FAMILIES}


@pytest.mark.parametrize("example, options", launched.EXAMPLES, ids=[" ".join((n, *o)) for n, o in launched.EXAMPLES])
def test_example_on_2_processes_equals_1(example, options, launched_2, tmp_path):
    """Every example's tiny default, run by its `main` under a 2-process launch as the README launches it (all in
    the one launch of `launched_2`), saves what one process saves. Catches an example that fails or hangs under a
    2-process launch, gives its ranks different inputs (the input check raises), or whose split run differs from the
    whole one (a pipeline input the plan does not cover, a rank-dependent seed). With the Wan example's
    `--cfg-parallel` (CFG 2 x Ulysses 1) and `--ring-degree 2` (ring 2 x Ulysses 1) too."""
    stem, suffix = launched.example_id(example, options), launched.example_suffix(example)
    world2 = launched_2 / "examples"
    errors = sorted(world2.glob(f"{stem}.rank*.error"))
    assert not errors, "\n".join(e.read_text() for e in errors)
    # One process runs in this one, as `python examples/<example>.py` would (without the options, which need 2
    # processes): a subprocess would import torch and diffusers again, ~8 s on 2 cores. The tiny weights and the
    # script's generator are seeded locally, so what ran in this process (or, in the launch, in the same rank) before
    # does not change the result.
    launched.load_example(example).main(["--out", str(tmp_path / f"world1{suffix}")])
    assert (world2 / f"{stem}{suffix}").stat().st_size > 0
    got, expected = np.load(world2 / f"{stem}.npy"), np.load(tmp_path / "world1.npy")
    assert got.shape == expected.shape
    # float32 throughout, so the runs differ only by reassociated sums (~1e-6 after 4 steps). The largest measured is
    # CogVideoX's, 7e-6: its guided v-prediction steps amplify the transformer's differences by the guidance, 6
    # (see tests/tasks/launched.py). 1e-4 leaves a margin; ranks seeded apart (input check off) moved pixels by 0.08
    # (Qwen-Image) to 1.0.
    assert np.abs(got - expected).max() <= 1e-4
    assert np.abs(expected - expected.mean()).max() > 0.05, "a constant output would prove nothing"
