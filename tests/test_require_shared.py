"""``VARREF_REQUIRE_SHARED=1`` (CI) turns missing shared data from a skip into a failure."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).with_name("conftest.py")

SAMPLE = '''
import pytest

def test_uses_shared(shared):
    shared("models/1crn.pdb")

@pytest.mark.skipif(True, reason="../shared models not available")
def test_own_skip():
    pass
'''


def _run(folder: Path, require: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "VARREF_REQUIRE_SHARED": "1" if require else ""}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(folder / "tests")], capture_output=True, text=True, env=env,
                          cwd=folder)


def test_missing_shared_skips_locally_and_fails_in_ci(tmp_path):
    # a project copy whose ../shared does not exist
    tests = tmp_path / "project" / "tests"
    tests.mkdir(parents=True)
    shutil.copy(CONFTEST, tests / "conftest.py")
    (tests / "test_sample.py").write_text(SAMPLE)
    local = _run(tmp_path / "project", require=False)
    assert local.returncode == 0 and "2 skipped" in local.stdout, local.stdout
    ci = _run(tmp_path / "project", require=True)
    assert ci.returncode != 0
    assert "VARREF_REQUIRE_SHARED=1" in ci.stdout + ci.stderr


def test_skips_for_shared_data_fail_when_required(tmp_path):
    # ../shared exists but lacks the file: both kinds of skip become failures
    root = tmp_path / "work"
    tests = root / "project" / "tests"
    tests.mkdir(parents=True)
    (root / "shared" / "data").mkdir(parents=True)
    shutil.copy(CONFTEST, tests / "conftest.py")
    (tests / "test_sample.py").write_text(SAMPLE)
    ci = _run(root / "project", require=True)
    assert ci.returncode == 1 and "1 failed, 1 error" in ci.stdout, ci.stdout  # skipif: at setup
