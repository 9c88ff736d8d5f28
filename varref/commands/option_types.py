"""Argparse ``type=`` validators: every numeric option is checked here, when it is parsed.

A bad value ends the run before any file is read, with one line naming the option
(``varref: error: --resolution: must be in 0.5..30 Å, got nan``); see :mod:`varref.cli`.
The ranges match :class:`varref.refinement.options.RefineOptions`, which repeats the
refinement checks for callers of :mod:`varref.api`.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

#: Resolution range accepted everywhere (Å): beyond it a value is a typo, not a map.
RESOLUTION_RANGE = (0.5, 30.0)


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def finite_float(text: str) -> float:
    """Any finite number."""
    return _number(text)


def float_in(low: float | None = None, high: float | None = None, *, above: float | None = None,
             unit: str = "") -> Callable[[str], float]:
    """A finite number with ``low <= value <= high`` (either bound optional) and, with
    ``above``, strictly greater than it."""
    suffix = f" {unit}" if unit else ""

    def check(text: str) -> float:
        value = _number(text)
        if above is not None and value <= above:
            raise argparse.ArgumentTypeError(f"must be > {above:g}{suffix}, got {text}")
        if low is not None and high is not None and not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in {low:g}..{high:g}{suffix}, got {text}")
        if low is not None and value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low:g}{suffix}, got {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high:g}{suffix}, got {text}")
        return value

    check.__name__ = "number"  # argparse names the type in its own messages
    return check


#: Map resolution, Å.
resolution = float_in(*RESOLUTION_RANGE, unit="Å")
#: A strictly positive finite number (weights, steps, SNR, voxel sizes).
positive_float = float_in(above=0.0)
#: A finite number >= 0 (r.m.s.d.s, margins).
nonnegative_float = float_in(low=0.0)


def int_at_least(low: int) -> Callable[[str], int]:
    """An integer >= ``low``."""

    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text}")
        return value

    check.__name__ = "integer"
    return check


#: A count of things to do (members, workers, batch size, cycles, iterations, frames).
count = int_at_least(1)
#: An index (model index, reference frame).
index = int_at_least(0)

#: Smallest chunk edge ``--chunk`` takes, voxels: smaller chunks make thousands of objects
#: per frame for no gain (a refinement box is tens of voxels across).
MIN_CHUNK = 8


def chunk(text: str) -> int | str:
    """``auto``, ``frame`` or a chunk edge in voxels (>= :data:`MIN_CHUNK`)."""
    if text in ("auto", "frame"):
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto', 'frame' or a number of voxels, "
                                         f"got {text!r}") from None
    if value < MIN_CHUNK:
        raise argparse.ArgumentTypeError(f"must be 'auto', 'frame' or >= {MIN_CHUNK} voxels, "
                                         f"got {text}")
    return value


chunk.__name__ = "chunk"
