"""Progress of a long run on stderr: one line redrawn on a terminal, ~10 lines in a log."""

from __future__ import annotations

import sys
import time


class Progress:
    """Progress of ``total`` steps on stderr.

    On a terminal one line is redrawn in place. Otherwise (log files, batch jobs) a line is
    printed only when another tenth of the run is done, so a whole run prints at most 10
    lines. Nothing is printed during the first :attr:`DELAY` seconds, so short jobs stay
    quiet. Used as a context manager, it also ends a half-drawn terminal line when the run
    stops early (e.g. on an error), so the next message starts on a fresh line.

    Parameters
    ----------
    total : int
        Number of steps of the whole run.
    label : str
        What runs, printed first on the line.
    enabled : bool
        False prints nothing (counting still works).

    Examples
    --------
    >>> with Progress(len(paths), "writing maps") as bar:  # doctest: +SKIP
    ...     for path in paths:
    ...         write(path)
    ...         bar.advance()
    """

    DELAY = 1.0  # s

    def __init__(self, total: int, label: str, enabled: bool = True) -> None:
        self.total, self.label, self.done = total, label, 0
        self.enabled = enabled and total > 0
        self.interactive = sys.stderr.isatty()
        self.started = time.monotonic()
        self._step = max(1, -(-total // 10))  # ceil(total / 10): at most 10 log lines
        self._next = min(self._step, total)  # log: the next count that prints a line
        self._open_line = False  # a terminal line drawn without its newline
        self._finished = False

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more steps done and show the progress if it is time to."""
        self.done = min(self.done + n, self.total)
        if not self.enabled or self._finished:
            return
        elapsed = time.monotonic() - self.started
        if elapsed < self.DELAY or not (self.interactive or self.done >= self._next):
            return
        self._finished = self.done == self.total
        width = 30
        filled = width * self.done // self.total
        line = (f"{self.label} [{'#' * filled}{'.' * (width - filled)}] "
                f"{self.done}/{self.total} {elapsed:.0f} s")
        if self.interactive:
            print("\r" + line, end="\n" if self._finished else "", file=sys.stderr, flush=True)
            self._open_line = not self._finished
        else:
            print(line, file=sys.stderr, flush=True)
            self._next = min(self.total, (self.done // self._step + 1) * self._step)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._open_line:
            print(file=sys.stderr, flush=True)
            self._open_line = False
