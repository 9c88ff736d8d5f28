"""One writer per results store: the lock file, its takeover when stale, its release."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from varref.ensemble import store_lock
from varref.ensemble.results import ResultStore, _publish, open_results
from varref.ensemble.store_lock import LOCK_NAME, StoreLock, check_not_locked, hold, lock_holder
from varref.errors import InputError
from varref.example_data import example_helix


@pytest.fixture
def store(tmp_path) -> Path:
    model = example_helix(3)
    ResultStore.create(tmp_path / "s.zarr", model, 1, 2, ["m"], {"kind": "ensemble"})
    return tmp_path / "s.zarr"


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def plant_lock(store: Path, **fields) -> None:
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": "2026-01-01T00:00:00",
            "process_start": None, "token": "theirs"}
    info.update(fields)
    (store / LOCK_NAME).write_text(json.dumps(info))


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_lock_file_records_the_holder_and_is_removed_on_exit(store):
    with hold(store, exists=True):
        holder = lock_holder(store)
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        assert holder["started"] and holder["token"]
    assert lock_holder(store) is None


def test_a_second_writer_is_refused_naming_the_store_and_the_holder(store):
    with hold(store, exists=True):
        with pytest.raises(InputError) as error:
            StoreLock(store).acquire()
    message = str(error.value)
    assert message.startswith(str(store)) and f"pid {os.getpid()}" in message
    assert socket.gethostname() in message and "\n" not in message


def test_lock_is_released_after_an_error_and_after_ctrl_c(store):
    for exception in (RuntimeError, KeyboardInterrupt):
        with pytest.raises(exception):
            with hold(store, exists=True):
                assert lock_holder(store) is not None
                raise exception()
        assert lock_holder(store) is None


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(store, caplog):
    plant_lock(store, pid=dead_pid())
    with caplog.at_level(logging.WARNING, logger=store_lock.__name__):
        with hold(store, exists=True):
            assert lock_holder(store)["pid"] == os.getpid()
    assert "taking over the lock" in caplog.text and "no longer running" in caplog.text
    assert not list(store.glob(f"{LOCK_NAME}*"))  # no leftovers of the takeover


def test_a_reused_pid_is_not_mistaken_for_the_holder(store):
    """The pid is alive but belongs to a process started after the lock's (pid reuse)."""
    if store_lock._process_start(os.getpid()) is None:
        pytest.skip("no /proc here")
    plant_lock(store, pid=os.getpid(), process_start="1")
    with hold(store, exists=True):
        assert lock_holder(store)["token"] != "theirs"


def test_a_killed_but_unreaped_holder_counts_as_dead(store):
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        assert _wait_zombie(process.pid)
        plant_lock(store, pid=process.pid)
        with hold(store, exists=True):
            assert lock_holder(store)["pid"] == os.getpid()
    finally:
        process.wait()


def _wait_zombie(pid: int) -> bool:
    from tests.ensemble.tiny import wait_for

    def zombie() -> bool:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2:].split()[0] == "Z"

    if not Path(f"/proc/{pid}/stat").exists():
        pytest.skip("no /proc here")
    return wait_for(zombie, 10)


def test_a_live_holder_on_this_host_is_refused(store):
    plant_lock(store)  # this very process, as another run would be
    with pytest.raises(InputError, match="locked by another run"):
        StoreLock(store).acquire()
    assert lock_holder(store)["token"] == "theirs"  # untouched


def test_a_lock_from_another_host_is_refused_with_how_to_clear_it(store):
    plant_lock(store, host="node-17.cluster", pid=dead_pid())
    with pytest.raises(InputError) as error:
        StoreLock(store).acquire()
    assert "node-17.cluster" in str(error.value)
    assert f"delete {store / LOCK_NAME}" in str(error.value)
    assert lock_holder(store)["host"] == "node-17.cluster"


def test_release_never_removes_another_runs_lock(store):
    lock = StoreLock(store)
    plant_lock(store)
    lock.release()
    assert lock_holder(store)["token"] == "theirs"


def test_a_new_store_appears_with_its_lock_already_inside(tmp_path):
    path = tmp_path / "new.zarr"
    with hold(path, exists=False) as lock:
        ResultStore.create(path, example_helix(3), 1, 2, ["m"], {}, lock=lock)
        assert lock_holder(path)["token"] == lock.info["token"]
        # readers do not mind the lock file
        assert open_results(path).sizes["member"] == 2
        with pytest.raises(InputError, match="locked by another run"):
            StoreLock(path).acquire()
    assert lock_holder(path) is None
    assert ResultStore.open(path).finished().tolist() == [[False, False]]


def test_a_store_created_by_another_run_meanwhile_is_not_overwritten(tmp_path):
    path = tmp_path / "race.zarr"
    theirs = tmp_path / "theirs"
    ResultStore.create(theirs, example_helix(3), 1, 1, ["m"], {"run": "theirs"})
    ResultStore.create(path, example_helix(3), 1, 1, ["m"], {"run": "first"})
    ours = tmp_path / "ours"
    ResultStore.create(ours, example_helix(3), 1, 1, ["m"], {"run": "ours"})
    with pytest.raises(InputError, match="another run created a store here meanwhile"):
        _publish(ours, path)
    assert ResultStore.open(path).parameters["run"] == "first"


def test_an_ensemble_into_a_locked_store_is_refused_and_leaves_it_untouched(store):
    from varref.ensemble.ensemble import run_ensemble
    from varref.refinement.options import RefineOptions
    from varref.restraints import build_restraints
    from varref.simulate import simulate_map

    model = example_helix(3)
    plant_lock(store)
    before = tree(store)
    for resume in (False, True):
        with pytest.raises(InputError, match="locked by another run"):
            run_ensemble(None, model, build_restraints(model), simulate_map(model, 3.0), store,
                         2, 0.5, RefineOptions(resolution=3.0, weight=20.0), resume=resume,
                         progress=False)
    assert tree(store) == before


def test_finished_flags_and_data_are_unchanged_by_locking(store):
    model = example_helix(3)
    with hold(store, exists=True):
        ResultStore.open(store).write_member(0, 1, model.xyz, model.xyz, {"cc_mask": 0.5})
    np.testing.assert_allclose(ResultStore.open(store).member_xyz(0, 1), model.xyz, atol=1e-4)


def test_early_check_refuses_only_a_live_holder(store):
    check_not_locked(store)  # unlocked
    plant_lock(store, pid=dead_pid())
    check_not_locked(store)  # stale: the run will take it over
    assert lock_holder(store)["token"] == "theirs"  # the check changes nothing
    plant_lock(store)
    with pytest.raises(InputError, match="locked by another run"):
        check_not_locked(store)


def test_a_takeover_race_never_removes_the_winners_lock(store, monkeypatch):
    """Between our read of a stale lock and our rename of it, another run took it over: the
    file we moved is that run's live lock, and it is put back."""
    plant_lock(store, pid=dead_pid(), token="stale")
    lock = StoreLock(store)
    stale = lock._read_holder()
    plant_lock(store, token="winner")  # the other run's takeover, just before our rename
    lock._take_over_if_stale(stale)
    assert lock_holder(store)["token"] == "winner"
    assert not list(store.glob(f"{LOCK_NAME}.stale-*"))
