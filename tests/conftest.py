"""Shared fixtures: the read-only ../shared data (skipped cleanly when absent).

With ``VARREF_REQUIRE_SHARED=1`` (set by ``.ci/run``: CI always has ../shared) a missing
folder or any test skipped for want of shared data is a failure instead, so a broken path
can never turn the science tests off silently.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

#: True when shared data must be present (CI): skips for want of them become failures.
REQUIRE_SHARED = os.environ.get("VARREF_REQUIRE_SHARED", "") not in ("", "0")


def shared_file(relative: str) -> Path:
    """Path of a file under ../shared/data; skip the test when it is not there (fail with
    ``VARREF_REQUIRE_SHARED=1``)."""
    path = SHARED / relative
    if not path.exists():
        message = f"shared data not available: {relative} (looked in {SHARED})"
        if REQUIRE_SHARED:
            pytest.fail(message + "; VARREF_REQUIRE_SHARED=1 requires it", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture
def shared():
    """The ``shared_file`` helper as a fixture."""
    return shared_file


def pytest_sessionstart(session: pytest.Session) -> None:
    if REQUIRE_SHARED and not SHARED.is_dir():
        raise pytest.UsageError(f"VARREF_REQUIRE_SHARED=1 but {SHARED} does not exist")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """With VARREF_REQUIRE_SHARED=1, a skip that mentions shared data (the ``shared``
    fixture, or a module's own ``skipif`` on ../shared) is reported as a failure."""
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_SHARED and report.skipped and not hasattr(report, "wasxfail"):
        reason = str(report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr)
        if "shared" in reason.lower():
            report.outcome = "failed"
            report.longrepr = f"skipped for want of shared data under VARREF_REQUIRE_SHARED=1: {reason}"
