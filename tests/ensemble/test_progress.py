"""The progress line: redrawn on a terminal, at most ~10 lines in a log."""

from __future__ import annotations

import io
import re
import sys

import pytest

from varref.ensemble.progress import Progress


class _Stderr(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.fixture
def stderr(monkeypatch):
    """A fake stderr (terminal or not) and no start-up delay."""
    monkeypatch.setattr(Progress, "DELAY", 0.0)

    def install(tty: bool) -> _Stderr:
        stream = _Stderr(tty)
        monkeypatch.setattr(sys, "stderr", stream)
        return stream

    return install


# total -> lines: one per tenth (a tenth rounded up to whole steps) and one at the end
@pytest.mark.parametrize("total, n_lines", [(1, 1), (7, 7), (10, 10), (11, 6), (99, 10),
                                            (100, 10), (101, 10), (1000, 10)])
def test_a_log_gets_at_most_ten_lines_ending_with_the_total(stderr, total, n_lines):
    stream = stderr(tty=False)
    bar = Progress(total, "series")
    for _ in range(total + 3):  # extra calls past the end print nothing more
        bar.advance()
    lines = stream.getvalue().splitlines()
    assert len(lines) == n_lines
    counts = [int(line.split()[-3].split("/")[0]) for line in lines]
    assert counts == sorted(set(counts)) and counts[-1] == total
    assert "\r" not in stream.getvalue()


def test_big_steps_print_once_per_tenth_crossed(stderr):
    stream = stderr(tty=False)
    bar = Progress(100, "ensemble")
    bar.advance(35)
    bar.advance(3)   # still in the same tenth: quiet
    bar.advance(62)
    assert [line.split()[-3] for line in stream.getvalue().splitlines()] == ["35/100",
                                                                             "100/100"]


def test_a_terminal_gets_one_redrawn_line(stderr):
    stream = stderr(tty=True)
    with Progress(5, "maps") as bar:
        for _ in range(5):
            bar.advance()
    text = stream.getvalue()
    assert text.count("\r") == 5 and text.count("\n") == 1
    assert re.search(r"5/5 \d+ s\n$", text)


def test_a_run_stopped_early_ends_its_terminal_line(stderr):
    stream = stderr(tty=True)
    with pytest.raises(RuntimeError):
        with Progress(5, "maps") as bar:
            bar.advance()
            raise RuntimeError("stop")
    assert re.search(r"1/5 \d+ s\n$", stream.getvalue())


def test_quiet_when_disabled_or_short(stderr, monkeypatch):
    stream = stderr(tty=False)
    bar = Progress(3, "maps", enabled=False)
    for _ in range(3):
        bar.advance()
    monkeypatch.setattr(Progress, "DELAY", 3600.0)
    bar = Progress(3, "maps")
    for _ in range(3):
        bar.advance()
    assert bar.done == 3 and stream.getvalue() == ""
