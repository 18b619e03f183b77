"""Progress: a tqdm bar on a terminal, a plain line at a fixed interval in a pipe or a file."""

from __future__ import annotations

import io
import re

import pytest
import torch
from micro_model import MICRO_MODEL

from manifold_align.config import ConfigError, load_config
from manifold_align.train.config import RunConfig
from manifold_align.train.progress import Progress, format_duration


class FakeClock:
    """Seconds that move only when told to (``tick``)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


LINE = re.compile(
    r"^train: step (\d+)/(\d+) \((\d+)%\), ([\d.]+) steps/s(, loss [\d.]+)?, ETA (\S+)$"
)


def test_plain_lines_at_the_interval_with_rate_loss_and_eta():
    clock, out = FakeClock(), io.StringIO()
    p = Progress(100, enabled=True, interval_s=30, stream=out, clock=clock)
    assert p.plain
    for _ in range(9):  # 9 steps in 27 s: no line yet
        clock.now += 3
        p.update(1, loss=2.5)
    assert out.getvalue() == ""
    clock.now += 3
    p.update(1, loss=2.25)  # 10 steps in 30 s
    assert out.getvalue() == "train: step 10/100 (10%), 0.333 steps/s, loss 2.2500, ETA 4m30s\n"
    for _ in range(20):  # faster now: 20 steps in 30 s
        clock.now += 1.5
        p.update(1, loss=1.0)
    lines = out.getvalue().splitlines()
    assert lines[-1] == "train: step 30/100 (30%), 0.667 steps/s, loss 1.0000, ETA 1m45s"
    clock.now += 2
    p.update(1)
    p.close()  # one last line for the step done since
    assert out.getvalue().splitlines()[-1].startswith("train: step 31/100 (31%), 0.5 steps/s")
    assert all(LINE.match(line) for line in out.getvalue().splitlines())
    p.close()
    assert len(out.getvalue().splitlines()) == 3


def test_a_resumed_run_counts_from_its_step_and_close_adds_nothing_when_idle():
    clock, out = FakeClock(), io.StringIO()
    p = Progress(50, 40, interval_s=5, stream=out, clock=clock)
    clock.now += 5
    p.update(2)
    assert out.getvalue() == "train: step 42/50 (84%), 0.4 steps/s, ETA 20s\n"
    p.close()
    assert out.getvalue().count("\n") == 1


def test_a_run_stopped_by_an_error_ends_with_the_error_not_a_progress_line():
    clock, out = FakeClock(), io.StringIO()
    p = Progress(10, interval_s=30, stream=out, clock=clock)
    clock.now += 5
    p.update(3)
    p.close(last_line=False)
    p.close()
    assert out.getvalue() == ""


def test_a_terminal_gets_the_tqdm_bar_and_no_plain_lines():
    clock, out = FakeClock(), Terminal()
    p = Progress(10, interval_s=1, stream=out, clock=clock)
    assert not p.plain
    for _ in range(10):
        clock.now += 5
        p.update(1, loss=1.0)
    p.set_postfix(loss="1.0000")
    p.close()
    text = out.getvalue()
    assert "\r" in text and "10/10" in text and "loss=1.0000" in text
    assert "steps/s" not in text


@pytest.mark.parametrize("stream", [io.StringIO, Terminal])
def test_disabled_shows_nothing(stream):
    clock, out = FakeClock(), stream()
    p = Progress(10, enabled=False, interval_s=1, stream=out, clock=clock)
    for _ in range(10):
        clock.now += 5
        p.update(1, loss=1.0)
    p.close()
    assert out.getvalue() == ""


def test_interval_must_be_positive():
    with pytest.raises(ValueError, match=r"^interval_s: expected a positive number"):
        Progress(10, interval_s=0, stream=io.StringIO())
    for bad in ("0", "-1", ".nan"):
        with pytest.raises(ConfigError, match=r"train\.progress_interval_s: expected a positive"):
            load_config(RunConfig, None, [f"train.progress_interval_s={bad}"])
    assert load_config(RunConfig, None, ["train.progress_interval_s=5"]).train.progress_interval_s == 5


def test_format_duration():
    assert [format_duration(s) for s in (0, 7.2, 258, 3725, float("inf"), float("nan"))] == [
        "0s", "7s", "4m18s", "1h02m05s", "?", "?"
    ]


def test_fit_prints_plain_lines_when_stderr_is_not_a_terminal(tmp_path):
    from manifold_align.data.tokenizer import default_tokenizer
    from manifold_align.train.optimizers import build_optimizers
    from manifold_align.train.run import build_batches, build_run_model
    from manifold_align.train.trainer import fit

    config = load_config(RunConfig, None, [
        MICRO_MODEL, "data.synthetic.size=64", "data.batch_size=8", "train.steps=4", "train.ckpt_every=0",
        "train.progress_interval_s=25", "eval.zeroshot_samples=0", "eval.retrieval_samples=0",
    ])
    torch.manual_seed(0)
    tok = default_tokenizer(16)
    model = build_run_model(config, tok)
    batches = build_batches(config, tok, model.config.image_size)
    optimizers = build_optimizers(model, config.optim.lr)
    clock = FakeClock()

    def ticking() -> float:
        clock.now += 10.0  # every reading is 10 s later
        return clock.now

    out = io.StringIO()
    fit(model, optimizers, batches, config, tmp_path, progress_stream=out, clock=ticking)
    lines = out.getvalue().splitlines()
    assert lines, "no progress in a pipe"
    assert all(LINE.match(line) for line in lines), lines
    assert lines[-1].startswith("train: step 4/4 (100%)") and ", loss " in lines[-1]
