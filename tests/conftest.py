"""Shared fixtures: the read-only ../shared data (skipped cleanly when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_file(relative: str) -> Path:
    """Path of a file under ../shared/data, or skip the test when it is not there."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"shared data not available: {relative}")
    return path


@pytest.fixture
def shared():
    """The ``shared_file`` helper as a fixture."""
    return shared_file
