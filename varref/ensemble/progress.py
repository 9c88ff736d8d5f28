"""A one-line progress bar on stderr for long distributed runs."""

from __future__ import annotations

import sys
import time


class Progress:
    """One self-overwriting progress line on stderr (plain lines when not a terminal)."""

    def __init__(self, total: int, label: str, enabled: bool = True) -> None:
        self.total, self.label, self.done = total, label, 0
        self.enabled = enabled
        self.started = time.perf_counter()
        self.interactive = sys.stderr.isatty()

    def advance(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.started
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        line = (f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                f"{elapsed:.0f} s")
        if self.interactive:
            print("\r" + line, end="" if self.done < self.total else "\n", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)
