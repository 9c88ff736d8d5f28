"""Perturbed-start ensembles on Dask: science, streaming/resume, and surviving a killed worker."""

from __future__ import annotations

import numpy as np
import pytest

from varref.ensemble.cluster import dask_client, warm_up_futures
from varref.ensemble.ensemble import run_ensemble
from varref.ensemble.precision import precision
from varref.ensemble.results import ResultStore, open_results
from varref.model import read_model
from varref.refinement.options import RefineOptions
from varref.restraints import build_restraints
from varref.simulate import simulate_map

OPTIONS = dict(resolution=3.0, macro_cycles=3, weight=20.0, final_cc=False)


@pytest.fixture(scope="module")
def crambin():
    from tests.conftest import shared_file

    model = read_model(shared_file("models/1crn.pdb"))
    return model, build_restraints(model), simulate_map(model, 3.0)


@pytest.fixture(scope="module")
def client():
    with dask_client(workers=2, quiet=True) as connected:
        yield connected


def heavy_rmsd(model, xyz):
    heavy = ~model.is_hydrogen
    return np.sqrt(np.mean(np.sum((xyz[..., heavy, :] - model.xyz[heavy]) ** 2, axis=-1), axis=-1))


def test_refined_members_are_closer_to_the_truth_than_their_starts(client, crambin, tmp_path):
    model, restraints, density = crambin
    dataset = run_ensemble(client, model, restraints, density, tmp_path / "ens.zarr", 6, 1.0,
                           RefineOptions(**OPTIONS), batch_size=3, progress=False)
    assert dataset["finished"].values.all()
    start = heavy_rmsd(model, dataset["start_xyz"].values[0].astype(float))
    refined = heavy_rmsd(model, dataset["xyz"].values[0].astype(float))
    assert np.all(start > 0.9)
    assert np.all(refined < 0.5 * start)
    assert np.all(dataset["cc_mask"].values[0] > dataset["cc_mask_start"].values[0])
    spread = precision(dataset)
    assert spread.attrs["n_members"] == 6 and spread.sizes["residue"] == model.n_residues


def test_spread_is_larger_where_the_map_is_weaker(client, crambin, tmp_path):
    """Blank the density of residues 30-40: the data stop holding them, the spread grows."""
    model, restraints, density = crambin
    from dataclasses import replace

    weak_atoms = model.xyz[(model.residue_number >= 30) & (model.residue_number <= 40)]
    grid = np.stack(np.meshgrid(*[density.origin[a] + np.arange(n) * density.voxel_size[a]
                                  for a, n in enumerate(density.shape_xyz)], indexing="ij"), -1)
    from scipy.spatial import cKDTree

    distance, _ = cKDTree(weak_atoms).query(grid.reshape(-1, 3))
    fade = np.where(distance < 2.5, 0.1, 1.0).reshape(grid.shape[:3]).transpose(2, 1, 0)
    weakened = replace(density, data=(density.data * fade).astype(np.float32))
    dataset = run_ensemble(client, model, restraints, weakened, tmp_path / "weak.zarr", 6, 1.0,
                           RefineOptions(**OPTIONS), batch_size=3, progress=False)
    spread = precision(dataset)
    number = spread["residue_number"].values
    rmsf = spread["residue_rmsf"].values
    inside = (number >= 30) & (number <= 40)
    assert rmsf[inside].mean() > 2.0 * rmsf[~inside].mean()


def test_resume_completes_an_interrupted_run_with_identical_results(client, crambin, tmp_path):
    model, restraints, density = crambin
    options = RefineOptions(**OPTIONS)
    whole = run_ensemble(client, model, restraints, density, tmp_path / "whole.zarr", 4, 0.8,
                         options, batch_size=2, progress=False)
    # an interrupted run: the store exists, only members 0 and 1 finished
    partial = tmp_path / "partial.zarr"
    run_ensemble(client, model, restraints, density, partial, 2, 0.8, options, batch_size=2,
                 progress=False)
    import shutil

    shutil.rmtree(partial)
    shutil.copytree(tmp_path / "whole.zarr", partial)
    import xarray as xr

    wiped = xr.Dataset({"finished": (("frame", "member"), np.array([[True, True, False, False]]))})
    wiped.to_zarr(str(partial), region={"frame": slice(0, 1), "member": slice(0, 4)}, zarr_format=2)
    assert ResultStore.open(partial).finished().sum() == 2
    resumed = run_ensemble(client, model, restraints, density, partial, 4, 0.8, options,
                           batch_size=2, resume=True, progress=False)
    assert resumed["finished"].values.all()
    np.testing.assert_array_equal(resumed["xyz"].values, whole["xyz"].values)


def test_resume_refuses_a_store_from_different_parameters(client, crambin, tmp_path):
    from varref.errors import InputError

    model, restraints, density = crambin
    run_ensemble(client, model, restraints, density, tmp_path / "a.zarr", 2, 0.5,
                 RefineOptions(**OPTIONS), batch_size=2, progress=False)
    with pytest.raises(InputError, match="perturb_rmsd"):
        run_ensemble(client, model, restraints, density, tmp_path / "a.zarr", 2, 0.9,
                     RefineOptions(**OPTIONS), batch_size=2, resume=True, progress=False)


def test_workers_warm_up_in_the_background_and_the_store_is_read_once(crambin, tmp_path,
                                                                       monkeypatch):
    """dask_client returns before the workers have loaded varref (they warm up while the
    client searches the weight and makes the store); every worker has imported the task code
    by the first task; the finished flags are read once per run, not once per member (100
    reads cost 1.6 s of a 30 s ensemble)."""
    import sys

    model, restraints, density = crambin
    reads = []
    finished = ResultStore.finished

    def counted(self):
        reads.append(1)
        return finished(self)

    monkeypatch.setattr(ResultStore, "finished", counted)
    with dask_client(workers=2, quiet=True) as client:
        warming = warm_up_futures(client)
        assert len(warming) == 2 and all(f.key.startswith("warm-up-") for f in warming)
        run_ensemble(client, model, restraints, density, tmp_path / "w.zarr", 8, 0.5,
                     RefineOptions(**OPTIONS), batch_size=4, progress=False)
        assert client.gather(warming) == ["ready", "ready"]
        imported = client.run(lambda: "varref.ensemble.tasks" in sys.modules)
        assert list(imported.values()) == [True, True]
    assert len(reads) == 1


def test_the_local_cluster_runs_its_housekeeping_rarely(client):
    """A LocalCluster of dask_client runs without the workers' statistical profiler (a stack
    sample every 10 ms, taking the GIL from the refinement) and with 500 ms event-loop ticks,
    in the scheduler and in the workers alike (the workers get the settings when spawned)."""
    from varref.ensemble.cluster import LOCAL_CLUSTER_CONFIG

    def housekeeping(dask_worker=None, dask_scheduler=None):
        server = dask_worker or dask_scheduler
        callbacks = server.periodic_callbacks
        return {"profile": "profile" in callbacks, "tick_ms": callbacks["tick"].callback_time}

    workers = client.run(housekeeping)
    assert len(workers) == 2
    for seen in workers.values():
        assert seen["profile"] is False
        assert seen["tick_ms"] == 500
    assert client.run_on_scheduler(housekeeping)["tick_ms"] == 500
    # the nannies (in this process) read their worker's memory every 500 ms
    nannies = list(client.cluster.workers.values())
    assert [n.periodic_callbacks["memory_monitor"].callback_time for n in nannies] == [500, 500]
    assert LOCAL_CLUSTER_CONFIG["distributed.worker.profile.enabled"] is False


def test_killing_a_worker_mid_run_loses_nothing(crambin, tmp_path):
    """Kill one worker process while tasks run: every member present once, results identical."""
    import threading

    model, restraints, density = crambin
    options = RefineOptions(**OPTIONS)
    with dask_client(workers=2, quiet=True) as client:
        reference = run_ensemble(client, model, restraints, density, tmp_path / "ref.zarr", 6, 0.8,
                                 options, batch_size=1, progress=False)
    with dask_client(workers=2, quiet=True) as client:
        killed = []

        def kill_one_worker_when_busy():
            import time

            for _ in range(600):
                processing = client.processing()
                busy = [address for address, keys in processing.items() if keys]
                if busy:
                    time.sleep(0.3)  # let the task get going
                    pid = client.run(lambda: __import__("os").getpid(), workers=[busy[0]])[busy[0]]
                    import os
                    import signal

                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
                time.sleep(0.05)

        # the workers' background warm-up is done: the worker is killed in a refinement task
        assert client.gather(warm_up_futures(client)) == ["ready", "ready"]
        killer = threading.Thread(target=kill_one_worker_when_busy)
        killer.start()
        disturbed = run_ensemble(client, model, restraints, density, tmp_path / "dist.zarr", 6, 0.8,
                                 options, batch_size=1, progress=False)
        killer.join()
    assert killed, "no worker was killed"
    assert disturbed["finished"].values.sum() == 6
    np.testing.assert_array_equal(disturbed["xyz"].values, reference["xyz"].values)
    np.testing.assert_array_equal(open_results(tmp_path / "dist.zarr")["cc_mask"].values,
                                  reference["cc_mask"].values)
