"""A pool of P gloo ranks kept alive across test cases.

Spawning a process and importing torch and diffusers costs seconds, so each world size gets one pool for the whole
session. A task is a module-level function (picklable by name) that every rank runs; `run` returns the per-rank
results in rank order, or raises with every failing rank's traceback. A pool whose task failed or timed out is torn
down and replaced, since its ranks may be stuck in a collective.
"""

from __future__ import annotations

import datetime
import multiprocessing as mp
import os
import queue
import socket
import time
import traceback


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(rank: int, world: int, port: int, inbox, outbox) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    # Read when Inductor is imported: compile in this process instead of starting a pool of compile workers per rank,
    # each importing torch again (seconds of the 2 cores for kernels that take milliseconds to compile).
    os.environ["TORCHINDUCTOR_COMPILE_THREADS"] = "1"
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)  # P ranks share 2 cores; more threads only thrash
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=90))
    outbox.put((rank, True, "ready"))
    while (task := inbox.get()) is not None:
        fn, args, kwargs = task
        try:
            outbox.put((rank, True, fn(*args, **kwargs)))
        except BaseException:  # noqa: BLE001 - reported to the parent, which raises
            outbox.put((rank, False, traceback.format_exc()))
    dist.destroy_process_group()
    # Exit without the interpreter's teardown, which takes seconds in a process that loaded torch, diffusers and
    # compiled code: the parent has read every result, and nothing here is left to save once the queue is flushed.
    outbox.close()
    outbox.join_thread()
    os._exit(0)


class RankPool:
    """`world` processes, forked from a server that preloaded torch and diffusers, joined in one gloo process group."""

    def __init__(self, world: int, timeout: float = 400.0):
        self.world = world
        self.timeout = timeout
        # Ranks fork from one server process that imported torch and diffusers once for the whole session: a spawned
        # rank would import them again (4 to 5 s of CPU each, 9 ranks and their restarts per session). The server
        # inherits this environment when it starts, so Inductor reads the compile-thread setting there too.
        os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["torch", "torch.distributed", "diffusers", "diffusers_usp"])
        port = _free_port()
        self.inboxes = [ctx.Queue() for _ in range(world)]
        self.outbox = ctx.Queue()
        self.procs = [
            ctx.Process(target=_serve, args=(r, world, port, self.inboxes[r], self.outbox), daemon=True)
            for r in range(world)
        ]
        for p in self.procs:
            p.start()
        self._collect("startup")

    def _collect(self, what: str) -> list:
        results, errors = [None] * self.world, []
        for _ in range(self.world):
            try:
                rank, ok, value = self.outbox.get(timeout=self.timeout)
            except queue.Empty:
                self.close()
                raise TimeoutError(f"{what}: ranks did not answer within {self.timeout:.0f} s") from None
            results[rank] = value
            if not ok:
                errors.append(f"--- rank {rank} ---\n{value}")
        if errors:
            self.close()
            raise RuntimeError(f"{what} failed on {len(errors)} rank(s):\n" + "\n".join(errors))
        return results

    @property
    def alive(self) -> bool:
        return all(p.is_alive() for p in self.procs)

    def run(self, fn, *args, **kwargs) -> list:
        for inbox in self.inboxes:
            inbox.put((fn, args, kwargs))
        return self._collect(fn.__name__)

    def stop(self) -> None:
        """Ask every rank to leave its process group and exit; `close` waits for them."""
        for inbox in self.inboxes:
            try:
                inbox.put(None)
            except (OSError, ValueError):
                pass

    def close(self) -> None:
        self.stop()
        deadline = time.monotonic() + 5  # for all ranks together: they exit at the same time
        for p in self.procs:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
