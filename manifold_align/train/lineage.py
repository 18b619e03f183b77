"""Resuming from an older checkpoint starts a new lineage; the newer checkpoints move aside.

A run resumed from step ``s`` while its ``checkpoints/`` holds checkpoints after ``s`` (say,
``--resume checkpoints/step_00000010`` of a run that reached step 24) replays steps ``s+1,
...`` differently from the first time. The checkpoints after ``s`` belong to the abandoned
lineage: [supersede][manifold_align.train.lineage.supersede] moves them, unchanged, into
``checkpoints/superseded-<UTC time>/`` (with a copy of ``metrics.jsonl`` as it was), points
``latest`` back at the newest checkpoint left, and so

* nothing is deleted: a superseded checkpoint can still be evaluated or resumed from
  (which supersedes the newer ones of the then current lineage in turn);
* ``train.keep_checkpoints`` rotation counts only the current lineage, and never deletes the
  checkpoint the run resumed from (see ``save_checkpoint(protect=...)``);
* ``latest`` never names a checkpoint that is not there.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

from manifold_align.files import fsync_dir, write_atomic
from manifold_align.train.checkpoint import LATEST

__all__ = ["SUPERSEDED_PREFIX", "supersede"]

SUPERSEDED_PREFIX = "superseded-"
_STEP = re.compile(r"step_(\d{8})")


def supersede(root: str | Path, after: int, metrics: str | Path | None = None) -> Path | None:
    """Move the checkpoints of ``root`` newer than step ``after`` into a superseded folder.

    Args:
        root: a run's ``checkpoints/`` folder (may be absent).
        after: the step resumed from (``-1`` for a fresh run: every checkpoint moves).
        metrics: the run's ``metrics.jsonl``, copied beside the moved checkpoints so their
            curves stay readable.

    Returns:
        The ``superseded-<time>`` folder, or ``None`` if nothing was newer.
    """
    root = Path(root)
    if not root.is_dir():
        return None
    newer = sorted(p for p in root.iterdir()
                   if (m := _STEP.fullmatch(p.name)) and int(m.group(1)) > after)
    if not newer:
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside, n = root / f"{SUPERSEDED_PREFIX}{stamp}", 1
    while aside.exists():
        n += 1
        aside = root / f"{SUPERSEDED_PREFIX}{stamp}-{n}"
    aside.mkdir()
    for path in newer:
        os.replace(path, aside / path.name)
    if metrics is not None and Path(metrics).is_file() and not Path(metrics).is_symlink():
        shutil.copyfile(metrics, aside / Path(metrics).name)
    kept = sorted(p.name for p in root.iterdir()
                  if _STEP.fullmatch(p.name) and (p / "state.json").is_file())
    if kept:
        write_atomic(root / LATEST, kept[-1] + "\n", durable=True)
    else:
        (root / LATEST).unlink(missing_ok=True)
    fsync_dir(root)
    return aside
