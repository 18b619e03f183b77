"""A stalled (not dead) rank fails the job after ``train.collective_timeout_s``, not 30 minutes."""

from __future__ import annotations

import datetime
import os
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from manifold_align.config import ConfigError, load_config
from manifold_align.train import distributed, run
from manifold_align.train.config import RunConfig
from manifold_align.train.distributed import init_distributed

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")


class _Stop(Exception):
    pass


def test_the_config_key_reaches_init_process_group(monkeypatch, tmp_path):
    seen = {}

    def fake_init_process_group(backend, **kwargs):
        seen.update(kwargs, backend=backend)
        raise _Stop

    monkeypatch.setattr(distributed.dist, "init_process_group", fake_init_process_group)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    config = load_config(RunConfig, None, ["train.device=cpu", "train.collective_timeout_s=42.5"])
    with pytest.raises(_Stop):
        run.train(config, tmp_path / "run")
    assert seen["backend"] == "gloo"
    assert seen["timeout"] == datetime.timedelta(seconds=42.5)
    assert load_config(RunConfig).train.collective_timeout_s == 600.0


@pytest.mark.parametrize("value", ["0", "-1", "inf", "soon"])
def test_a_bad_timeout_is_named(value):
    with pytest.raises(ConfigError, match=r"train\.collective_timeout_s"):
        load_config(RunConfig, None, [f"train.collective_timeout_s={value}"])


def _rank(rank: int, port: int, results) -> None:
    torch.set_num_threads(1)
    env = {"WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank),
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    os.environ.update(env, GLOO_SOCKET_IFNAME="lo")
    init_distributed(torch.device("cpu"), env=env, timeout_s=3)
    if rank == 1:
        time.sleep(120)  # stalled: alive, never reaching the collective
        return
    try:
        dist.barrier()
        results.put("no error")
    except Exception as exc:  # the timeout, whatever torch calls it
        results.put(type(exc).__name__ + ": " + str(exc)[:200])


def test_a_stalled_rank_fails_the_collective_after_the_timeout():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("fork")
    results = ctx.Queue()
    procs = [ctx.Process(target=_rank, args=(r, port, results)) for r in (0, 1)]
    for p in procs:
        p.start()
    try:
        answer = results.get(timeout=90)  # far below torch's 1800 s default
    finally:
        for p in procs:
            p.kill()
            p.join()
    assert answer != "no error"
    assert "timeout" in answer.lower() or "timed out" in answer.lower(), answer
