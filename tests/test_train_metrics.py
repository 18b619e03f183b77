"""Reading ``metrics.jsonl``: a last line cut short by a kill is tolerated, damage elsewhere is named."""

from __future__ import annotations

import json

import pytest
from test_train_loop import _one_thread, micro  # noqa: F401 - the autouse fixture applies here too
from test_train_run_folder import snapshot

from manifold_align.train.checkpoint import CheckpointError
from manifold_align.train.metrics import MetricsError, MetricsWriter, read_metrics
from manifold_align.train.run import train

RECORDS = [{"kind": "train", "step": s, "loss": 1.0 / s, "note": "é"} for s in (1, 2, 3)]


def _write(path, tail: bytes = b"", middle: bytes | None = None) -> list[bytes]:
    lines = [json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in RECORDS]
    if middle is not None:
        lines[1] = middle + b"\n"
    path.write_bytes(b"".join(lines) + tail)
    return lines


@pytest.mark.parametrize("tail", [
    b'{"kind": "train", "step": 4, "lo',  # cut inside a record
    '{"kind": "train", "step": 4, "note": "é'.encode()[:-1],  # cut inside a UTF-8 character
    b"\0" * 64,  # a crash left the file longer than its data
], ids=["json", "utf-8", "zeros"])
def test_a_truncated_last_line_is_dropped_with_a_warning(tmp_path, tail):
    path = tmp_path / "metrics.jsonl"
    _write(path, tail)
    before = path.read_bytes()
    with pytest.warns(RuntimeWarning, match=r"metrics\.jsonl: line 4 .*cut short"):
        assert read_metrics(path) == RECORDS
    assert path.read_bytes() == before


def test_a_whole_last_record_without_its_newline_is_kept(tmp_path):
    path = tmp_path / "metrics.jsonl"
    _write(path, b'{"kind": "eval", "step": 3}')
    assert read_metrics(path) == [*RECORDS, {"kind": "eval", "step": 3}]
    assert read_metrics(tmp_path / "absent.jsonl") == []


@pytest.mark.parametrize(("middle", "message"), [
    (b'{"kind": "train", "step": 2, "note": "\xff\xfe"}', r"line 2 is not UTF-8 text"),
    (b'{"kind": "train", "step": 2, "lo', r"line 2 is not JSON"),
    (b"[1, 2]", r"line 2 is a JSON list, expected an object"),
], ids=["utf-8", "json", "not-an-object"])
def test_a_damaged_line_before_the_last_names_the_file_and_line(tmp_path, middle, message):
    path = tmp_path / "metrics.jsonl"
    _write(path, middle=middle)
    with pytest.raises(MetricsError, match=rf"metrics\.jsonl: {message}"):
        read_metrics(path)


def test_resuming_drops_a_cut_last_line_and_keeps_the_records_up_to_the_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    _write(path, b'{"kind": "train", "st')
    with pytest.warns(RuntimeWarning, match="line 4"), MetricsWriter(path, resume_step=2) as w:
        assert w.kept == RECORDS[:2]
        w.write("train", 3, {"loss": 0.5})
    assert read_metrics(path) == [*RECORDS[:2], {"kind": "train", "step": 3, "loss": 0.5}]


def test_a_resume_refuses_a_damaged_metrics_file_and_changes_nothing(tmp_path):
    # resuming from step 2 would move step 4 aside and rewrite the run's files; the damaged
    # line is found first, so the folder stays byte for byte as it was (the old reader stopped
    # at the damaged line and silently dropped every record after it)
    run = tmp_path / "run"
    train(micro("train.steps=4", "train.ckpt_every=2", "train.log_every=1"), run)
    metrics = run / "metrics.jsonl"
    lines = metrics.read_bytes().split(b"\n")
    lines[1] = lines[1][:10] + b"\xff" + lines[1][11:]
    metrics.write_bytes(b"\n".join(lines))
    before = snapshot(run)
    with pytest.raises(CheckpointError, match=r"metrics\.jsonl: line 2 is not UTF-8 .*unchanged"):
        train(micro("train.steps=4", "train.ckpt_every=2", "train.log_every=1"), run,
              resume=run / "checkpoints" / "step_00000002")
    assert snapshot(run) == before
