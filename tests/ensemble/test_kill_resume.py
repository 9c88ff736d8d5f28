"""SIGKILL the main ``varref ensemble`` / ``varref series`` process at random moments, resume,
and get exactly the results of an undisturbed run: nothing lost, nothing torn, nothing mixed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.ensemble.tiny import (assert_same_results, cli_env, ensemble_args, finished_count,
                                 kill_session, run_varref, series_args, varref_command, wait_for)
from varref.ensemble.store_lock import LOCK_NAME

BUILD = {"ensemble": ensemble_args, "series": series_args}


def run_and_kill(args: list, store: Path, total: int, rng: random.Random,
                 from_start: bool) -> dict:
    """Start the program and SIGKILL its main process at a random moment: once a random
    number of members (more than the store holds now, fewer than ``total``) are written plus
    up to 0.3 s, or (``from_start``) at a random time 1-8 s after its start (which may fall
    before the store exists or the resume checks end). Then clean up its Dask processes.
    Returns what the kill left."""
    process = subprocess.Popen(varref_command(*args, "--workers", "2"), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, env=cli_env(),
                               start_new_session=True)
    try:
        if from_start:
            time.sleep(rng.uniform(1.0, 8.0))
        else:
            target = rng.randint(finished_count(store) + 1, total - 1)
            wait_for(lambda: finished_count(store) >= target or process.poll() is not None, 120)
            time.sleep(rng.uniform(0.0, 0.3))
        finished_early = process.poll() is not None
        if not finished_early:
            os.kill(process.pid, signal.SIGKILL)  # the main process only, as `kill -9 PID` does
            process.wait(timeout=30)
    finally:
        kill_session(process)  # its LocalCluster, orphaned by the kill
    return {"finished_early": finished_early, "members": finished_count(store),
            "locked": (store / LOCK_NAME).exists()}


def kill_and_resume(kind: str, inputs, reference: Path, folder: Path, seed: int,
                    kills: int = 1) -> None:
    rng = random.Random(seed)
    store = folder / f"{kind}-{seed}.zarr"
    args = BUILD[kind](inputs, store)
    total = 16 if kind == "ensemble" else 15  # members of the tiny runs
    for k in range(kills):
        # the first kill always falls while members are written; later ones mostly too
        nearly_done = finished_count(store) >= total - 1
        left = run_and_kill(args + (["--resume"] if k else []), store, total, rng,
                            from_start=k > 0 and (nearly_done or rng.random() < 0.3))
        print(f"{kind} seed {seed} kill {k}: {left}")
    result = run_varref(*args, "--resume", "--workers", "2")
    assert result.returncode == 0, result.stderr
    if left["locked"] and not left["finished_early"]:
        assert "taking over the lock of a run that is no longer running" in result.stderr
    assert not (store / LOCK_NAME).exists()
    assert_same_results(store, reference)


@pytest.mark.parametrize("kind", ["ensemble", "series"])
def test_sigkill_then_resume_gives_the_undisturbed_results(kind, tiny_inputs, reference_runs,
                                                           tmp_path):
    kill_and_resume(kind, tiny_inputs, reference_runs[kind], tmp_path, seed=1)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [2, 3, 4, 5])
@pytest.mark.parametrize("kind", ["ensemble", "series"])
def test_repeated_sigkills_at_random_moments_then_resume(kind, seed, tiny_inputs, reference_runs,
                                                         tmp_path):
    kill_and_resume(kind, tiny_inputs, reference_runs[kind], tmp_path, seed=seed, kills=3)


def test_a_second_program_on_the_same_store_is_refused(tiny_inputs, tmp_path):
    """Two `varref ensemble --resume -o S` at once: the second exits 2 naming the holder; the
    first finishes normally."""
    store = tmp_path / "shared.zarr"
    # enough members that the first run is still going while the second starts up (24 were
    # finished within the second's start-up once both got faster)
    args = ensemble_args(tiny_inputs, store, n_models=96)
    first = subprocess.Popen(varref_command(*args, "--workers", "1"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=cli_env(),
                             start_new_session=True)
    try:
        assert wait_for(lambda: finished_count(store) >= 1, 120)
        second = run_varref(*args, "--resume", "--workers", "1")
        assert first.poll() is None, "the first run ended before the second started: add members"
        assert second.returncode == 2
        error = second.stderr.strip().splitlines()[-1]
        assert error.startswith(f"varref: error: {store}: locked by another run (pid {first.pid}")
        out, err = first.communicate(timeout=300)
        assert first.returncode == 0, err
    finally:
        kill_session(first)
    assert finished_count(store) == 96
