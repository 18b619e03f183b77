"""Process groups for the multi-process tests: gloo ranks on this machine, forked, bounded.

``run_ranks(worker, world, folder)`` forks ``world`` processes that each call
``worker(rank, world, init_file, folder)`` and waits for them, killing all of them and failing
the test past ``timeout_s``; a worker starts with :func:`join_gloo`.
"""

from __future__ import annotations

import datetime
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def join_gloo(rank: int, world: int, init_file: str, timeout_s: int = 120) -> None:
    """One thread, loopback only (whatever the hostname resolves to), then the gloo group."""
    torch.set_num_threads(1)
    if sys.platform.startswith("linux"):
        os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=timeout_s))


def run_ranks(worker: Callable[..., None], world: int, folder: Path, timeout_s: int = 300) -> None:
    """Run ``worker(rank, world, init_file, str(folder))`` on ``world`` forked ranks."""
    context = mp.start_processes(worker, args=(world, str(folder / "rendezvous"), str(folder)),
                                 nprocs=world, join=False, start_method="fork")
    deadline = time.monotonic() + timeout_s
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"distributed workers did not finish in {timeout_s} s")
