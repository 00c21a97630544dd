"""Real pipelines end to end under `accelerate launch`, compared with the same pipelines run in one process."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pipeline_script
import pytest

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


def test_pipelines_under_accelerate_launch_equal_single_process(tmp_path):
    """The user's path: `accelerate launch` on CPU, `PartialState`, `parallelize(pipe)`, several denoising steps
    through the real scheduler and VAE, for every tiny family (Flux, Flux ControlNet plain, union and multi, Wan,
    SD3, SD3 ControlNet, CogVideoX, Qwen-Image and its ControlNet, LTX, HunyuanVideo) in one launch. Catches
    anything the transformer-level tests miss: the pipeline's own per-step inputs (timesteps, ids, guidance,
    CogVideoX's rotary table, the text masks of LTX, Qwen-Image and HunyuanVideo), CFG batches, Qwen-Image's two
    forwards per step with different text lengths (one sharded, one replicated on 2 ranks), ControlNet residuals
    gathered and split again, a union ControlNet's mode token, a hook that breaks across repeated calls, ranks that
    diverge."""
    result = _launch(2, str(ROOT / "tests" / "pipeline_script.py"), str(tmp_path))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for name in pipeline_script.FAMILIES:
        expected = pipeline_script.run(name, pipeline_script.build(name))
        got = np.load(tmp_path / f"{name}.npy")
        assert got.shape == expected.shape, name
        assert np.abs(got - expected).max() <= 1e-5, name
        assert np.abs(expected - expected.mean()).max() > 0.05, f"{name}: a constant output would prove nothing"
    # The ControlNets ran split too: 72 of the 144 image tokens on each rank, once in each of the 2 steps (SD3's CFG
    # is one batch of 2; Qwen-Image's true CFG reuses the residuals of the prompt's pass).
    tokens = json.loads((tmp_path / "controlnet_tokens.json").read_text())
    assert tokens == {name: [72, 72] if "controlnet" in name else [] for name in pipeline_script.FAMILIES}


EXAMPLES = [
    ("flux", "flux.png"),
    ("wan", "wan.gif"),
    ("sd3", "sd3.png"),
    ("cogvideox", "cogvideox.gif"),
    ("qwenimage", "qwenimage.png"),
    ("ltx", "ltx.gif"),
    ("hunyuan_video", "hunyuan_video.gif"),
]


@pytest.mark.parametrize("example, output", EXAMPLES)
def test_example_runs_and_passes_its_check(example, output, tmp_path):
    """Every example's tiny default runs under 2 processes, saves its output and matches one process (--check)."""
    result = _launch(2, str(ROOT / "examples" / f"{example}.py"), "--check", "--output", str(tmp_path / output))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / output).stat().st_size > 0
