"""One writer per output folder: a second run is refused naming the first one's pid; locks of
dead processes are taken over; the lock file goes away with its holder."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from manifold_align.cli import main
from manifold_align.config import dump_config

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _wait_for(predicate, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert proc.poll() is None, "the holder ended early"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_second_run_into_the_same_folder_is_refused_naming_the_first(tmp_path, capsys):
    from test_train_loop import micro

    config = tmp_path / "micro.yaml"
    dump_config(micro("train.steps=100000", "train.ckpt_every=1", "train.keep_checkpoints=1"),
                config)
    run = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "manifold_align.cli", "train", "--config", str(config), "--out", str(run)],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: (run / "checkpoints" / "latest").is_file(), first)
        rc = main(["train", "--config", str(config), "--out", str(run), "--resume", "latest",
                   "--set", "train.steps=1"])
        err = capsys.readouterr().err
        assert rc == 2
        assert f"in use by pid {first.pid} on host {socket.gethostname()}" in err
        assert first.poll() is None  # the first run goes on undisturbed
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
    # killed without releasing: its lock file is stale, and the next run takes it over
    assert json.loads((run / ".lock").read_text())["pid"] == first.pid
    rc = main(["train", "--out", str(run), "--resume", "latest", "--set", "train.steps=1"])
    assert rc == 0, capsys.readouterr().err
    assert not (run / ".lock").exists()


HOLD = """
import os, sys, time
from manifold_align.run_lock import RunLock
lock = RunLock(sys.argv[1]).acquire()
if sys.argv[2] == "orphan":  # a child inherits the descriptor, the holder dies
    child = os.fork()
    if child == 0:
        time.sleep(120)
        os._exit(0)
    print(child, flush=True)
    os._exit(0)
print("held", flush=True)
time.sleep(120)
"""


def _holder(folder: Path, mode: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), mode], env=ENV,
                            stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def test_live_holder_refused_then_dead_holders_lock_taken_over(tmp_path):
    from manifold_align.run_lock import RunLock, RunLockedError

    proc, line = _holder(tmp_path, "hold")
    try:
        assert line == "held"
        with pytest.raises(RunLockedError, match=f"pid {proc.pid} on host"):
            RunLock(tmp_path).acquire()
    finally:
        proc.kill()
        proc.wait()
    lock = RunLock(tmp_path).acquire()  # the kernel dropped the dead holder's flock
    assert lock.stale["pid"] == proc.pid
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / ".lock").exists()


def test_lock_held_only_by_an_orphan_of_a_dead_holder_is_taken_over(tmp_path):
    from manifold_align.run_lock import RunLock

    proc, child = _holder(tmp_path, "orphan")
    proc.wait()
    try:
        with RunLock(tmp_path) as lock:
            assert lock.stale["pid"] == proc.pid
    finally:
        os.kill(int(child), signal.SIGKILL)


def test_without_flock_the_recorded_pid_decides(tmp_path, monkeypatch):
    import fcntl

    from manifold_align.run_lock import RunLock, RunLockedError

    def no_flock(*args):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    lock_file = tmp_path / ".lock"
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock_file.write_text(json.dumps({"pid": alive.pid, "host": socket.gethostname()}))
        with pytest.raises(RunLockedError, match=f"pid {alive.pid}.*no flock"):
            RunLock(tmp_path).acquire()
    finally:
        alive.kill()
        alive.wait()
    lock_file.write_text(json.dumps({"pid": 12345, "host": "another-host"}))
    with pytest.raises(RunLockedError, match="another-host"):
        RunLock(tmp_path).acquire()
    dead = _dead_pid()
    lock_file.write_text(json.dumps({"pid": dead, "host": socket.gethostname()}))
    with RunLock(tmp_path) as lock:
        assert lock.stale["pid"] == dead
    assert not lock_file.exists()


def test_a_sweep_into_a_folder_in_use_is_refused(tmp_path, capsys):
    out = tmp_path / "sweep"
    out.mkdir()
    proc, line = _holder(out, "hold")
    try:
        assert line == "held"
        rc = main(["simulate", "--out", str(out), "--set", "steps=5", "--quiet"])
        assert rc == 2
        assert f"in use by pid {proc.pid}" in capsys.readouterr().err
    finally:
        proc.kill()
        proc.wait()
    assert [p.name for p in out.iterdir()] == [".lock"]  # nothing written by the refused sweep
