"""Every bad command-line input ends in exit status 2 and one line on stderr naming the key or file.

The contract (docs/design.md, ``manifold_align.cli``): ``manifold-align COMMAND: error: <key or file>: <what is wrong>``,
one line, no traceback, and nothing in a run folder changed. Inputs that need another user
(a read-only folder when the tests run as root), a full disk or a missing extra run the
command in a subprocess; everything else runs in-process.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from manifold_align.cli import main

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "manifold_align" / "configs" / "train" / "tiny-sphere.yaml"

# A run small enough to train in seconds (a 16-pixel micro model of tiny-oblique).
MICRO_RUN = """\
model:
  name: tiny-oblique
  overrides: {image_size: 16, patch_size: 8, vision_width: 16, vision_layers: 1,
              vision_heads: 2, text_width: 16, text_layers: 1, text_heads: 2, tokens: 4,
              token_dim: 8}
data: {synthetic: {size: 64}, batch_size: 8}
train: {steps: 2, ckpt_every: 2, log_every: 1, device: cpu, progress: false}
eval: {zeroshot_samples: 8, retrieval_samples: 8, batch_size: 8}
"""

SWEEP = """\
name: tiny
noise: [0.2]
manifolds: ["sphere:8"]
batch_sizes: [8]
concepts: [4]
steps: 5
log_every: 5
final_window: 2
"""


def refused(code: int, err: str, command: str, *needles: str) -> str:
    """Assert the documented answer to bad input; return the message line."""
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    line = lines[0]
    assert line.startswith(f"manifold-align {command}: error: "), line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def cli(capsys, *argv: str) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def micro_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "micro.yaml"
    path.write_text(MICRO_RUN)
    return path


@pytest.fixture(scope="module")
def sweep_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sweep") / "tiny.yaml"
    path.write_text(SWEEP)
    return path


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, micro_config) -> Path:
    """A finished two-step micro run with its step-2 checkpoint."""
    run = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", "--config", str(micro_config), "--out", str(run)]) == 0
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_00000002"
    return run


# ------------------------------------------------------------------------------ --set and files


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("optim.betas=[0.9", ("--set optim.betas", "not valid YAML")),
        ("model.overrides={tokens: 2, tokens: 4}", ("--set model.overrides", "duplicate key 'tokens'")),
        ("data.vocab_size=abc", ("data.vocab_size", "expected an integer")),
        ("data.vocab_size=0", ("data.vocab_size", "expected > 0")),
        ("model.overrides.vocab_size=abc", ("model.overrides.vocab_size", "expected an integer")),
        ("model.overrides.vocab_size=0", ("model.overrides.vocab_size", "positive integer")),
        ("model.overrides.context_length=abc", ("model.overrides.context_length", "integer")),
        ("model.overrides.context_length=0", ("model.overrides.context_length", "positive")),
        ("model.overrides.grad_checkpointing=maybe",
         ("model.overrides.grad_checkpointing", "expected true or false")),
        ("model.overrides.temperature_init=abc",
         ("model.overrides.temperature_init", "expected a number")),
        ("model.overrides.manifold=torus", ("model.overrides.manifold", "'torus'")),
        ("data.synthetic.appearance.texture=abc",
         ("data.synthetic.appearance.texture", "expected a number")),
        ("data.synthetic.appearance.texture=5", ("data.synthetic.appearance.texture", "[0, 2]")),
        ("data.synthetic.appearance.glow=1", ("unknown key data.synthetic.appearance.glow",)),
        ("train.device=cuda:x", ("train.device", "'cuda:x'")),
        ("train.device=cuda:-1", ("train.device", "'cuda:-1'")),
        ("train.device=", ("train.device", "''")),
        ("train.device=gpu", ("train.device", "'gpu'")),
        ("train.seed=-1", ("train.seed", "[0, 4294967295]")),
        ("train.seed=4294967296", ("train.seed", "[0, 4294967295]")),
        ("data.synthetic.seed=-1", ("data.synthetic.seed", "[0, 4294967295]")),
    ],
)
def test_train_rejects_a_bad_override_by_key(tmp_path, capsys, micro_config, override, needles):
    out = tmp_path / "run"
    code, err = cli(capsys, "train", "--config", micro_config, "--set", override, "--out", out)
    refused(code, err, "train", *needles)
    assert not out.exists()


def test_a_device_this_machine_lacks_is_named(tmp_path, capsys, micro_config):
    code, err = cli(capsys, "train", "--config", micro_config, "--set", "train.device=cuda:99",
                    "--out", tmp_path / "run")
    refused(code, err, "train", "train.device", "'cuda:99'")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("head", "needles"),
    [
        (b"# caf\xe9\n", ("not UTF-8", "byte 0xe9", "line 1")),
        (b"optim:\n  lr: 1.0e-3\n  lr: 1.0e-2\n", ("line 3", "duplicate key 'lr'")),
        (b"optim: {lr: 1.0e-3, lr: 1.0e-2}\n", ("line 1", "duplicate key 'lr'")),
        (b"optim: [lr: 5\n", ("not valid YAML",)),
    ],
    ids=["non-utf8", "duplicate-key", "duplicate-key-flow", "invalid-yaml"],
)
def test_train_and_simulate_reject_a_bad_config_file_by_name(tmp_path, capsys, head, needles):
    path = tmp_path / "bad.yaml"
    path.write_bytes(head + MICRO_RUN.encode())
    code, err = cli(capsys, "train", "--config", path, "--out", tmp_path / "run")
    refused(code, err, "train", str(path), *needles)
    code, err = cli(capsys, "simulate", "--config", path, "--out", tmp_path / "sweep")
    refused(code, err, "simulate", str(path), *needles)
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("noise=[0.2", ("--set noise", "not valid YAML")),
        ("seed=-1", ("seed", "[0, 4294967295]")),
        ("seed=abc", ("seed", "expected an integer")),
    ],
)
def test_simulate_rejects_a_bad_override_by_key(tmp_path, capsys, sweep_config, override, needles):
    code, err = cli(capsys, "simulate", "--config", sweep_config, "--set", override,
                    "--out", tmp_path / "out")
    refused(code, err, "simulate", *needles)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("eval.batch_size=[1", ("--set eval.batch_size", "not valid YAML")),
        ("train.device=cuda:x", ("train.device", "'cuda:x'")),
        ("eval.batch_size=0", ("eval.batch_size", "expected > 0")),
    ],
)
def test_eval_rejects_a_bad_override_by_key(trained_run, capsys, override, needles):
    before = sorted(p.name for p in trained_run.iterdir())
    code, err = cli(capsys, "eval", "--checkpoint", trained_run, "--set", override)
    refused(code, err, "eval", *needles)
    assert sorted(p.name for p in trained_run.iterdir()) == before


# ------------------------------------------------------------------------------ --out


def _bad_outs(tmp_path: Path) -> dict[str, tuple[Path, tuple[str, ...]]]:
    a_file = tmp_path / "a-file.txt"
    a_file.write_text("not a folder\n")
    too_long = tmp_path / ("x" * 300) / "run"
    return {
        "existing-file": (a_file, ("--out", str(a_file), "not a folder")),
        "under-a-file": (a_file / "run", ("--out", str(a_file), "not a folder")),
        "name-too-long": (too_long, ("--out", "name too long")),
    }


@pytest.mark.parametrize("case", ["existing-file", "under-a-file", "name-too-long"])
def test_train_and_simulate_reject_an_unusable_out(
    tmp_path, capsys, micro_config, sweep_config, case
):
    out, needles = _bad_outs(tmp_path)[case]
    code, err = cli(capsys, "train", "--config", micro_config, "--out", out)
    refused(code, err, "train", *needles)
    code, err = cli(capsys, "simulate", "--config", sweep_config, "--out", out)
    refused(code, err, "simulate", *needles)
    assert (tmp_path / "a-file.txt").read_text() == "not a folder\n"


@pytest.mark.parametrize("case", ["under-a-file", "name-too-long", "existing-folder"])
def test_eval_rejects_an_unusable_out(trained_run, tmp_path, capsys, case):
    if case == "existing-folder":
        out, needles = tmp_path, ("--out", str(tmp_path), "is a folder")
    else:
        out, needles = _bad_outs(tmp_path)[case]
        out = out.parent / "eval.json" if case == "name-too-long" else out / "eval.json"
    code, err = cli(capsys, "eval", "--checkpoint", trained_run, "--out", out)
    refused(code, err, "eval", *needles)


def _drop_root_override() -> None:  # pragma: no cover - runs in the child
    """In the child: root without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH obeys file modes."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _run_cli(calls: list[list[str]], *, preexec=None, prelude: str = "") -> list[tuple[int, str]]:
    """Run ``main(argv)`` for each argv in one child process; ``(status, stderr)`` of each."""
    code = textwrap.dedent(
        """
        import contextlib, io, json, sys
        {prelude}
        from manifold_align.cli import main
        results = []
        for argv in json.loads(sys.argv[1]):
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                try:
                    status = main(argv)
                except SystemExit as exc:
                    status = exc.code
            results.append([status, err.getvalue()])
        print(json.dumps(results))
        """
    ).format(prelude=prelude)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(calls)], capture_output=True, text=True,
        env=env, preexec_fn=preexec, cwd=REPO, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return [tuple(r) for r in json.loads(proc.stdout.strip().splitlines()[-1])]


def test_a_read_only_out_is_refused_by_every_command(
    trained_run, tmp_path, micro_config, sweep_config
):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        results = _run_cli(
            [
                ["train", "--config", str(micro_config), "--out", str(locked / "run")],
                ["simulate", "--config", str(sweep_config), "--out", str(locked / "sweep")],
                ["eval", "--checkpoint", str(trained_run), "--out", str(locked / "eval.json")],
                ["train", "--config", str(micro_config), "--out", str(locked)],
            ],
            preexec=_drop_root_override if os.geteuid() == 0 else None,
        )
    finally:
        locked.chmod(0o755)
    for (code, err), command in zip(results, ["train", "simulate", "eval", "train"]):
        refused(code, err, command, "--out", str(locked), "not writable")
    assert list(locked.iterdir()) == []


# ------------------------------------------------------------------------------ environment


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _small_files_only() -> None:  # pragma: no cover - runs in the child
    """In the child: files cannot grow past 32 KiB (a full disk for the checkpoint's weights)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (32 * 1024, 32 * 1024))


def test_a_full_disk_is_reported_and_the_last_checkpoint_stays_intact(
    trained_run, tmp_path, capsys
):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    ckpts = run / "checkpoints"
    before = _digest(ckpts / "step_00000002")
    assert os.path.getsize(ckpts / "step_00000002" / "model.safetensors") > 32 * 1024
    (code, err), = _run_cli(
        [["train", "--out", str(run), "--resume", "latest", "--set", "train.steps=4",
          "--set", "train.ckpt_every=1"]],
        preexec=_small_files_only,
    )
    refused(code, err, "train", str(ckpts / "step_00000003"), "File too large")
    assert (ckpts / "latest").read_text().strip() == "step_00000002"
    assert _digest(ckpts / "step_00000002") == before
    assert sorted(p.name for p in ckpts.iterdir()) == ["latest", "step_00000002"]
    # with room again, the run continues from the intact checkpoint
    code, err = cli(capsys, "train", "--out", run, "--resume", "latest", "--set", "train.steps=4")
    assert code == 0, err
    assert (ckpts / "latest").read_text().strip() == "step_00000004"


@pytest.mark.parametrize("missing", ["tokenizers", "safetensors", "PIL"])
def test_a_missing_extra_names_the_package_and_the_install_command(tmp_path, missing):
    (code, err), = _run_cli(
        [["train", "--config", str(TINY), "--out", str(tmp_path / "run")]],
        prelude=f"sys.modules[{missing!r}] = None",
    )
    refused(code, err, "train", f"'{missing}'", "pip install 'manifold-align[train]'")
    assert not (tmp_path / "run").exists()
