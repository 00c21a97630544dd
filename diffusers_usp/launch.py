"""`notebook_launch`: accelerate's `notebook_launcher`, safe to call repeatedly from a Jupyter kernel."""

import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from typing import Any

from accelerate import notebook_launcher

START_TIMEOUT = 120.0  # seconds for every process to exist; forking a kernel takes well under one


def notebook_launch(function: Callable[..., Any], *args: Any, num_processes: int, port: int | None = None) -> None:
    """Run `function(*args)` in `num_processes` processes forked from this one, as `notebook_launcher` does, but on a
    free port and with every process held back until all of them exist.

    Why the hold: `notebook_launcher` runs torch's elastic agent in this process. The agent serves the rendezvous
    store from a thread of this process, which looks up each connecting peer's address (glibc `getnameinfo`), and
    it forks the workers one by one. A worker forked while that thread holds glibc's resolver lock inherits the lock
    held and hangs at its own first connection, inside `init_process_group`. Seen in a few percent of launches from
    a Jupyter kernel (torch 2.13, accelerate 1.15); with the hold, none in 120. Once every worker exists, nothing
    forks any more, so their connections are safe.

    Args:
        function: Runs in every process, which `notebook_launcher` gives `RANK`, `LOCAL_RANK`, `WORLD_SIZE`,
            `MASTER_ADDR` and `MASTER_PORT`; `accelerate.PartialState()` or `torch.distributed.init_process_group()`
            inside it makes the process group. It is inherited by fork, not pickled, so a closure works.
        *args: Passed to `function`.
        num_processes: Processes to start, at least 1.
        port: The rendezvous port. Default: a free one picked now (`notebook_launcher`'s own default, 29500, may be
            held by another launch or job).

    Returns nothing, as `notebook_launcher`: have rank 0 write what the caller needs to a file. Raises what
    `notebook_launcher` raises when a process fails.
    """
    if num_processes < 1:
        raise ValueError(f"num_processes must be at least 1, got {num_processes}")
    if port is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    started = tempfile.mkdtemp(prefix="usp_launch_")  # one empty file per process that exists

    def held_back(*args: Any) -> Any:
        open(os.path.join(started, os.environ.get("LOCAL_RANK", "0")), "w").close()
        deadline = time.monotonic() + START_TIMEOUT
        while len(os.listdir(started)) < num_processes:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(os.listdir(started))} of {num_processes} processes started")
            time.sleep(0.01)
        return function(*args)

    try:
        notebook_launcher(held_back, args=args, num_processes=num_processes, use_port=str(port))
    finally:
        shutil.rmtree(started, ignore_errors=True)
