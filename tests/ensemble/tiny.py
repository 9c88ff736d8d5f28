"""Tiny inputs and helpers for tests that run whole ``varref ensemble`` / ``varref series`` programs.

A 12-residue poly-Ala helix (60 atoms), a simulated 3 Å map of it and a 5-frame series of
maps of the helix moved a little more in every frame: a member refines in well under a
second, so a run is dominated by starting Dask, and tests can kill and resume whole programs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

#: Options shared by every tiny run (given weight: no weight search; few macro-cycles).
TINY_OPTIONS = ["--resolution", "3", "--macro-cycles", "2", "--weight", "20"]


@dataclass
class TinyInputs:
    folder: Path
    model: Path
    map: Path
    frames: list[Path]


@pytest.fixture(scope="session")
def tiny_inputs(tmp_path_factory) -> TinyInputs:
    from dataclasses import replace

    from varref.example_data import example_helix
    from varref.maps import write_map
    from varref.model import write_model
    from varref.simulate import grid_around, model_density, simulate_map

    folder = tmp_path_factory.mktemp("tiny")
    model = example_helix(12)
    write_model(model, folder / "model.pdb")
    write_map(simulate_map(model, 3.0), folder / "map.mrc")
    # frame k: the C-terminal half shifted by 0.15 Å × (k - 2) along x
    moving = model.residue_index >= 6
    truths = []
    for k in range(5):
        xyz = model.xyz.copy()
        xyz[moving, 0] += 0.15 * (k - 2)
        truths.append(xyz)
    grid = grid_around(np.concatenate(truths), 1.0, 6.0)
    frames = []
    for k, xyz in enumerate(truths):
        path = folder / f"frame_{k}.mrc"
        write_map(replace(grid, data=model_density(model, xyz, grid, 3.0)), path)
        frames.append(path)
    return TinyInputs(folder, folder / "model.pdb", folder / "map.mrc", frames)


def cli_env() -> dict[str, str]:
    """Environment of a varref program started by a test: this checkout importable, one
    thread per runtime (as the LocalCluster workers have)."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env.update({"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1"})
    return env


def varref_command(*args) -> list[str]:
    return [sys.executable, "-m", "varref.cli", *map(str, args)]


def ensemble_args(inputs: TinyInputs, output: Path, n_models: int = 16) -> list[str]:
    return ["ensemble", inputs.model, inputs.map, "--members", n_models, "--perturb-rmsd", "0.5",
            "-o", output, "--batch-size", "1", *TINY_OPTIONS]


def series_args(inputs: TinyInputs, output: Path, models_per_map: int = 3) -> list[str]:
    return ["series", inputs.model, *inputs.frames, "--mode", "chained", "--members",
            models_per_map, "--perturb-rmsd", "0.3", "-o", output, "--batch-size", "1",
            *TINY_OPTIONS]


def run_varref(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a varref program to its end (own session: its Dask processes are cleaned up)."""
    process = subprocess.Popen(varref_command(*args), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=cli_env(),
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        kill_session(process)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def kill_session(process: subprocess.Popen) -> None:
    """SIGKILL whatever is left of a program's session (its LocalCluster nanny and workers)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if process.poll() is None:
        process.wait(timeout=30)


def wait_for(condition, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return False


def finished_count(store: Path) -> int:
    """Finished members of a store being written (0 while it does not exist yet)."""
    import zarr

    try:
        return int(np.asarray(zarr.open_group(str(store), mode="r")["finished"][...]).sum())
    except Exception:  # noqa: BLE001 - not there yet, or being created
        return 0


@pytest.fixture(scope="session")
def reference_runs(tiny_inputs, tmp_path_factory) -> dict[str, Path]:
    """Undisturbed ``varref ensemble`` and ``varref series`` runs on a LocalCluster."""
    folder = tmp_path_factory.mktemp("reference")
    stores = {"ensemble": folder / "ensemble.zarr", "series": folder / "series.zarr"}
    for kind, build in (("ensemble", ensemble_args), ("series", series_args)):
        result = run_varref(*build(tiny_inputs, stores[kind]), "--workers", "2")
        assert result.returncode == 0, result.stderr
    return stores


def assert_same_results(store: Path, reference: Path) -> None:
    """Every member finished, finite and equal (bit for bit) to the reference run's."""
    from varref.ensemble.results import ResultStore

    ours, theirs = ResultStore.open(store), ResultStore.open(reference)
    assert ours.finished().all(), f"unfinished members: {np.argwhere(~ours.finished()).tolist()}"
    assert ours.incomplete_members() == []
    a, b = ours.dataset(), theirs.dataset()
    for name in ("xyz", "start_xyz", "cc_mask", "bond_rmsd"):
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
