"""A training run's folder: resuming from an older step, refusals that change nothing, other
kinds of folder, links out of it, file modes, and the summary after a late kill."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest
from test_train_loop import _one_thread, micro  # noqa: F401 - the autouse fixture applies here too

from manifold_align.cli import main
from manifold_align.config import dump_config
from manifold_align.run_folder import RunFolderError, open_run_folder
from manifold_align.train.checkpoint import CheckpointError, find_checkpoint
from manifold_align.train.metrics import read_metrics
from manifold_align.train.run import train


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry below ``folder`` (links not followed): sha256 of files, the target of links."""
    out = {}
    for base, dirs, names in os.walk(folder):
        for name in dirs + names:
            path = Path(base) / name
            key = str(path.relative_to(folder))
            if path.is_symlink():
                out[key] = "-> " + os.readlink(path)
            elif path.is_file():
                out[key] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                out[key] = "dir"
    return out


def _cli(capsys, *args: str) -> tuple[int, str]:
    rc = main(list(args))
    return rc, capsys.readouterr().err


@pytest.fixture
def config_file(tmp_path) -> str:
    """The micro run as a config file, for the command line."""
    path = tmp_path / "micro.yaml"
    dump_config(micro("train.steps=2", "train.ckpt_every=1"), path)
    return str(path)


# ------------------------------------------------------------------ resuming from an older step


def test_resume_from_an_older_step_keeps_it_and_moves_newer_ones_aside(tmp_path):
    run = tmp_path / "run"
    train(micro("train.steps=24", "train.ckpt_every=2", "train.keep_checkpoints=0"), run)
    originals = {p.name: (p / "state.json").read_bytes()
                 for p in (run / "checkpoints").glob("step_*")}
    step10 = run / "checkpoints" / "step_00000010"

    # the reproduction: resume at 10 with rotation to 3, train to 16
    train(micro("train.steps=16", "train.ckpt_every=2", "train.keep_checkpoints=3"), run,
          resume=step10)
    ckpts = run / "checkpoints"
    assert step10.is_dir()  # the checkpoint resumed from is never rotated away
    assert sorted(p.name for p in ckpts.glob("step_*")) == [
        "step_00000010", "step_00000012", "step_00000014", "step_00000016"]
    latest = find_checkpoint("latest", ckpts)  # never dangling
    assert latest.name == "step_00000016"
    # the abandoned lineage (12..24) is kept, untouched, with its metrics
    (aside,) = ckpts.glob("superseded-*")
    assert sorted(p.name for p in aside.glob("step_*")) == [f"step_{s:08d}" for s in range(12, 25, 2)]
    for p in aside.glob("step_*"):
        assert (p / "state.json").read_bytes() == originals[p.name]
    assert max(r["step"] for r in read_metrics(aside / "metrics.jsonl")) == 24
    assert max(r["step"] for r in read_metrics(run / "metrics.jsonl")) == 16

    # and the run goes on from latest
    result = train(micro("train.steps=18", "train.ckpt_every=2", "train.keep_checkpoints=3"),
                   run, resume="latest")
    assert result.step == 18
    names = sorted(p.name for p in ckpts.glob("step_*"))
    assert names == ["step_00000014", "step_00000016", "step_00000018"]


# ------------------------------------------------------------------ refusals change nothing


def test_refused_resume_leaves_the_run_folder_byte_identical(tmp_path, capsys, config_file):
    run = tmp_path / "run"
    rc, err = _cli(capsys, "train", "--config", config_file, "--out", str(run))
    assert rc == 0, err
    before = snapshot(run)
    rc, err = _cli(capsys, "train", "--out", str(run), "--resume", "latest",
                   "--set", "optim.lr=0.5", "--set", "train.steps=4")
    assert rc == 2 and "optim.lr: 0.002 in the checkpoint, 0.5 now" in err
    assert snapshot(run) == before
    # so a plain resume still works afterwards
    rc, err = _cli(capsys, "train", "--out", str(run), "--resume", "latest", "--set", "train.steps=3")
    assert rc == 0, err


def test_fresh_run_into_someone_elses_folder_is_refused_unless_overwrite(tmp_path, capsys,
                                                                         config_file):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("my: own config\n")
    (mine / "notes.txt").write_text("keep me\n")
    before = snapshot(mine)
    sets = ["--config", config_file, "--set", "train.steps=1"]
    rc, err = _cli(capsys, "train", "--out", str(mine), *sets)
    assert rc == 2 and "not empty" in err and "--overwrite" in err
    assert snapshot(mine) == before

    rc, err = _cli(capsys, "train", "--out", str(mine), "--overwrite", *sets)
    assert rc == 0, err
    assert (mine / "notes.txt").read_text() == "keep me\n"
    assert "my: own" not in (mine / "config.yaml").read_text()


def test_training_into_a_simulation_and_simulating_into_a_run_are_refused(tmp_path, capsys,
                                                                          config_file):
    sweep = tmp_path / "sweep"
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("name: tiny\nnoise: [0.2]\nmanifolds: ['sphere:4']\nbatch_sizes: [4]\n"
                   "concepts: [2]\nsteps: 5\nlog_every: 5\nfinal_window: 2\n"
                   "temperatures: [{mode: none}]\n")
    assert main(["simulate", "--config", str(cfg), "--out", str(sweep), "--quiet"]) == 0
    capsys.readouterr()
    before = snapshot(sweep)
    sets = ["--config", config_file, "--set", "train.steps=1"]
    rc, err = _cli(capsys, "train", "--out", str(sweep), *sets)
    assert rc == 2 and "a simulation's output" in err
    assert snapshot(sweep) == before
    # a simulation may run again into its own folder
    assert main(["simulate", "--config", str(cfg), "--out", str(sweep), "--quiet"]) == 0

    run = tmp_path / "run"
    rc, err = _cli(capsys, "train", "--out", str(run), *sets)
    assert rc == 0, err
    before = snapshot(run)
    rc, err = _cli(capsys, "simulate", "--config", str(cfg), "--out", str(run), "--quiet")
    assert rc == 2 and "a training run" in err
    assert snapshot(run) == before


def test_fresh_run_with_overwrite_over_a_run_moves_its_checkpoints_aside(tmp_path):
    run = tmp_path / "run"
    train(micro("train.steps=2", "train.ckpt_every=1"), run)
    with pytest.raises(FileExistsError, match="--resume latest"):
        train(micro("train.steps=2"), run)
    train(micro("train.steps=1", "optim.lr=1e-3"), run, overwrite=True)
    ckpts = run / "checkpoints"
    assert find_checkpoint("latest", ckpts).name == "step_00000001"
    (aside,) = ckpts.glob("superseded-*")
    assert sorted(p.name for p in aside.glob("step_*")) == ["step_00000001", "step_00000002"]


# ------------------------------------------------------------------ links out of the folder


def test_a_link_out_of_the_run_folder_is_refused_and_never_written_through(tmp_path, capsys):
    run = tmp_path / "run"
    train(micro("train.steps=2", "train.ckpt_every=1"), run)
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("precious\n")
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to(elsewhere)
    before = snapshot(run)
    rc, err = _cli(capsys, "train", "--out", str(run), "--resume", "latest", "--set", "train.steps=3")
    assert rc == 2
    assert "metrics.jsonl is a symbolic link" in err and "outside" in err
    assert elsewhere.read_text() == "precious\n"
    assert snapshot(run) == before
    # --overwrite does not make a link safe to write through
    rc, err = _cli(capsys, "train", "--out", str(run), "--resume", "latest", "--overwrite",
                   "--set", "train.steps=3")
    assert rc == 2 and elsewhere.read_text() == "precious\n"


# ------------------------------------------------------------------ file modes


@pytest.mark.parametrize("mask", [0o022, 0o027], ids=["umask022", "umask027"])
def test_run_folder_honours_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        run = tmp_path / "run"
        train(micro("train.steps=2", "train.ckpt_every=1"), run)
    finally:
        os.umask(old)
    wrong = []
    for base, dirs, names in os.walk(run):
        for name in dirs:
            mode = os.stat(Path(base) / name).st_mode & 0o777
            if mode != 0o777 & ~mask:
                wrong.append((name, oct(mode)))
        for name in names:
            mode = os.stat(Path(base) / name).st_mode & 0o777
            if mode != 0o666 & ~mask:
                wrong.append((name, oct(mode)))
    assert wrong == []
    assert (os.stat(run).st_mode & 0o777) == 0o777 & ~mask


# ------------------------------------------------------------------ summary after a late kill


def test_resume_after_a_kill_before_the_summary_writes_the_full_summary(tmp_path):
    run = tmp_path / "run"
    train(micro("train.steps=4", "train.ckpt_every=2"), run)
    full = (run / "summary.md").read_text()
    assert "| loss |" in full
    (run / "summary.md").unlink()  # killed after the final checkpoint, before the summary
    result = train(micro("train.steps=4", "train.ckpt_every=2"), run, resume="latest")
    assert result.step == 4 and result.train is not None and result.train["step"] == 4
    assert (run / "summary.md").read_text() == full


def test_resume_refuses_a_damaged_checkpoint_without_changing_the_folder(tmp_path):
    run = tmp_path / "run"
    train(micro("train.steps=2", "train.ckpt_every=1"), run)
    weights = run / "checkpoints" / "step_00000002" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    before = snapshot(run)
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        train(micro("train.steps=3"), run, resume="latest")
    assert snapshot(run) == before


@pytest.mark.parametrize("command", ["train", "simulate"])
@pytest.mark.parametrize(("case", "message"), [
    ("a file", "--out .*file: .*file exists and is not a folder"),
    ("under a file", "--out .*run: .*file exists and is not a folder"),
    ("too long", "--out .*: name too long"),
])
def test_unusable_out_is_a_one_line_error(tmp_path, capsys, config_file, command, case, message):
    (tmp_path / "file").write_text("x")
    out = {"a file": tmp_path / "file", "under a file": tmp_path / "file" / "run",
           "too long": tmp_path / ("x" * 300)}[case]
    args = ["--config", config_file] if command == "train" else ["--set", "steps=5", "--quiet"]
    rc, err = _cli(capsys, command, *args, "--out", str(out))
    assert rc == 2
    assert re.search(message, err) and len(err.strip().splitlines()) == 1
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.parametrize(("case", "message"), [
    ("a file", "is a file, not a folder"),
    ("under a file", "cannot create the output folder .*: Not a directory"),
    ("too long", "cannot (create|use) the output folder .*: File name too long"),
])
def test_the_library_refuses_an_unusable_out_too(tmp_path, case, message):
    # the CLI refuses these before any work (cli.options); a library caller gets the same refusal
    (tmp_path / "file").write_text("x")
    out = {"a file": tmp_path / "file", "under a file": tmp_path / "file" / "run",
           "too long": tmp_path / ("x" * 300)}[case]
    with pytest.raises(RunFolderError, match=message):
        with open_run_folder(out, "simulate", overwrite=False):
            pass
    assert (tmp_path / "file").read_text() == "x"
