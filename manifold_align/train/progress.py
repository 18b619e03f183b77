"""Training progress on stderr: a tqdm bar on a terminal, a plain line at a fixed interval elsewhere.

Under a batch system (SLURM, ``nohup``, ``| tee``) stderr is a file or a pipe, where a tqdm
bar is either silent or a stream of carriage returns. There `Progress` prints one plain,
greppable line every ``interval_s`` seconds of wall clock and one at the end:

```text
train: step 120/1000 (12%), 3.41 steps/s, loss 2.3456, ETA 4m18s
```

``steps/s`` is the rate since the previous line; ``ETA`` is the remaining steps at that rate.
The clock is injectable (``clock=``) so tests need not wait.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import TextIO

from tqdm import tqdm

__all__ = ["Progress", "format_duration"]


def format_duration(seconds: float) -> str:
    """``3725.0 -> "1h02m05s"``, ``258 -> "4m18s"``, ``7.2 -> "7s"``; ``"?"`` when not finite."""
    if not math.isfinite(seconds):
        return "?"
    s = max(0, round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m{s:02d}s"
    return f"{m}m{s:02d}s" if m else f"{s}s"


class Progress:
    """Steps done out of ``total``, shown as a tqdm bar (terminal) or plain lines (otherwise).

    Args:
        total: the step the run ends at.
        initial: the step it starts from (a resumed run).
        enabled: ``False`` shows nothing (``train.progress: false``, ranks other than 0).
        interval_s: seconds of ``clock`` between two plain lines (> 0).
        stream: where to write; ``sys.stderr`` when ``None``. Whether it ``isatty()`` chooses
            the bar or the lines.
        clock: seconds, monotonic; ``time.monotonic`` when ``None``.
        desc: the prefix of each line and of the bar.

    Raises:
        ValueError: ``interval_s`` is not a positive number.
    """

    def __init__(
        self,
        total: int,
        initial: int = 0,
        *,
        enabled: bool = True,
        interval_s: float = 30.0,
        stream: TextIO | None = None,
        clock: Callable[[], float] | None = None,
        desc: str = "train",
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s: expected a positive number of seconds, got {interval_s!r}")
        self.total, self.step, self.desc = total, initial, desc
        self.interval_s = float(interval_s)
        self._stream = sys.stderr if stream is None else stream
        self._clock = time.monotonic if clock is None else clock
        self._loss: float | None = None
        isatty = getattr(self._stream, "isatty", None)
        tty = bool(isatty()) if callable(isatty) else False
        self._bar = (
            tqdm(total=total, initial=initial, file=self._stream, dynamic_ncols=True, desc=desc)
            if enabled and tty else None
        )
        self._plain = enabled and not tty
        self._mark = (self._clock(), initial)  # (time, step) of the last line

    @property
    def plain(self) -> bool:
        """Whether this writes plain lines (an enabled progress on a stream that is no terminal)."""
        return self._plain

    def update(self, n: int = 1, *, loss: float | None = None) -> None:
        """Count ``n`` more steps; ``loss`` is the latest loss, for the plain line.

        Prints a plain line once ``interval_s`` has passed since the last one.
        """
        self.step += n
        if loss is not None:
            self._loss = loss
        if self._bar is not None:
            self._bar.update(n)
        elif self._plain and self._clock() - self._mark[0] >= self.interval_s:
            self._line()

    def set_postfix(self, **values: object) -> None:
        """Show ``values`` after the bar (``loss="2.3456"``); the plain lines ignore them."""
        if self._bar is not None:
            self._bar.set_postfix(**values)

    def _line(self) -> None:
        now = self._clock()
        then, step0 = self._mark
        rate = (self.step - step0) / (now - then) if now > then else float("nan")
        eta = (self.total - self.step) / rate if rate > 0 else float("inf")
        pct = 100.0 * self.step / self.total if self.total else 100.0
        loss = "" if self._loss is None else f", loss {self._loss:.4f}"
        print(
            f"{self.desc}: step {self.step}/{self.total} ({pct:.0f}%), {rate:.3g} steps/s"
            f"{loss}, ETA {format_duration(eta)}",
            file=self._stream, flush=True,
        )
        self._mark = (now, self.step)

    def close(self, last_line: bool = True) -> None:
        """Close the bar, or print a last plain line if steps were done since the previous one.

        ``last_line=False`` (a run stopped by an error) prints nothing more, so the error is
        the last word; closing twice does nothing.
        """
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._plain and last_line and self.step > self._mark[1]:
            self._line()
        self._plain = False
