"""``varref ensemble`` and ``varref series`` on a Dask cluster started as separate programs
(``dask scheduler``, ``dask worker``, as on a compute cluster), surviving a killed worker:
the scheduler reschedules its tasks on the other worker and the results equal a LocalCluster
run's bit for bit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ensemble.tiny import (assert_same_results, cli_env, ensemble_args, finished_count,
                                 kill_session, series_args, varref_command, wait_for)


class ExternalCluster:
    """A scheduler and named workers, each its own program in its own session."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.scheduler_file = folder / "scheduler.json"
        self.processes: dict[str, subprocess.Popen] = {}

    def _start(self, name: str, *args: str) -> None:
        log = open(self.folder / f"{name}.log", "w")  # noqa: SIM115 - lives as long as the program
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "dask", *args], stdout=log, stderr=subprocess.STDOUT,
            env=cli_env(), start_new_session=True)

    def start_scheduler(self) -> None:
        self._start("scheduler", "scheduler", "--port", "0", "--dashboard-address", ":0",
                    "--scheduler-file", str(self.scheduler_file))
        assert wait_for(lambda: self._address() is not None, 60), self.log("scheduler")

    def _address(self) -> str | None:
        try:
            return json.loads(self.scheduler_file.read_text())["address"]
        except (OSError, ValueError, KeyError):  # not written yet, or half-written
            return None

    @property
    def address(self) -> str:
        return self._address()

    def start_worker(self, name: str) -> None:
        self._start(name, "worker", "--scheduler-file", str(self.scheduler_file), "--nthreads", "1",
                    "--nworkers", "1", "--name", name, "--dashboard-address", ":0")

    def wait_for_workers(self, names: list[str]) -> None:
        from distributed import Client

        with Client(self.address, timeout=60) as client:
            def present() -> bool:
                workers = client.scheduler_info()["workers"].values()
                return set(names) <= {w.get("name") for w in workers}

            assert wait_for(present, 90, 0.2), {n: self.log(n) for n in names}

    def kill(self, name: str) -> None:
        """SIGKILL a worker program (nanny and worker process): a node lost without warning."""
        process = self.processes[name]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text()[-3000:]

    def stop(self) -> None:
        for process in self.processes.values():
            kill_session(process)


@pytest.fixture
def cluster(tmp_path):
    started = ExternalCluster(tmp_path)
    try:
        started.start_scheduler()
        for name in ("worker-a", "worker-b"):
            started.start_worker(name)
        started.wait_for_workers(["worker-a", "worker-b"])
        yield started
    finally:
        started.stop()


def run_killing_a_worker(cluster: ExternalCluster, args: list, store: Path, total: int,
                         victim: str) -> subprocess.CompletedProcess:
    """Run a varref program on the cluster and kill ``victim`` once some members are written."""
    program = subprocess.Popen(varref_command(*args, "--scheduler", cluster.address),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=cli_env(), start_new_session=True)
    try:
        assert wait_for(lambda: finished_count(store) >= 2 or program.poll() is not None, 180)
        assert program.poll() is None, program.communicate()[1]
        cluster.kill(victim)
        # the kill came while work remained: the survivor must have done the rest
        assert finished_count(store) < total
        out, err = program.communicate(timeout=300)
    finally:
        kill_session(program)
    return subprocess.CompletedProcess(program.args, program.returncode, out, err)


def test_ensemble_and_series_on_an_external_cluster_survive_a_killed_worker(
        cluster, tiny_inputs, reference_runs, tmp_path):
    ensemble = tmp_path / "ensemble.zarr"
    result = run_killing_a_worker(cluster, ensemble_args(tiny_inputs, ensemble), ensemble, 16,
                                  "worker-a")
    assert result.returncode == 0, result.stderr
    assert_same_results(ensemble, reference_runs["ensemble"])

    cluster.start_worker("worker-c")  # a replacement node joins; then the other one is lost
    cluster.wait_for_workers(["worker-b", "worker-c"])
    series = tmp_path / "series.zarr"
    result = run_killing_a_worker(cluster, series_args(tiny_inputs, series), series, 15,
                                  "worker-b")
    assert result.returncode == 0, result.stderr
    assert_same_results(series, reference_runs["series"])
