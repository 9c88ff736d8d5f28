"""Perturbed-start ensembles (``varref ensemble``): how precisely do the data fix the model?

The input model is perturbed N times (smooth random fields, :mod:`varref.perturbation`, each
member from its own seed) and every member is refined into the same map with the same weight
(searched once on the input model unless given). Members are refined in batches — one Dask
task refines ``batch_size`` members through the engine's batched kernels — and each finished
member is written to the zarr store at once. The spread of the refined members shows where
the map does not determine the model (Terwilliger et al. 2007).
"""

from __future__ import annotations

import logging
import uuid
from os import PathLike

import numpy as np
import xarray as xr

from varref.ensemble import store_lock
from varref.ensemble.fingerprint import data_sha256
from varref.ensemble.progress import Progress
from varref.ensemble.results import ResultStore
from varref.ensemble.resume import is_store, open_or_create, run_parameters_of
from varref.ensemble.tasks import MemberOutcome, RunContext, hold, refine_members
from varref.errors import InputError
from varref.maps import Map
from varref.model import Model
from varref.refinement.options import RefineOptions
from varref.refinement.pipeline import find_weight
from varref.restraints import Restraints

log = logging.getLogger(__name__)


def batches(items: list[int], size: int) -> list[list[int]]:
    """Consecutive chunks of ``size`` items."""
    return [items[k:k + size] for k in range(0, len(items), size)]


def run_ensemble(client, model: Model, restraints: Restraints, density: Map,
                 output: str | PathLike | None, n_models: int, perturb_rmsd: float,
                 options: RefineOptions, batch_size: int = 10, resume: bool = False,
                 progress: bool = True) -> xr.Dataset:
    """Refine ``n_models`` perturbed copies of ``model`` into ``density`` on a Dask client.

    ``output`` is a zarr path (members written as they finish) or None (in memory). Returns
    the results as an xarray Dataset (lazy for zarr).
    """
    if n_models < 1:
        raise InputError("--members", "must be at least 1")
    if not np.isfinite(perturb_rmsd) or perturb_rmsd < 0:
        raise InputError("--perturb-rmsd", f"must be a finite number >= 0, got {perturb_rmsd!r}")
    if batch_size < 1:
        raise InputError("--batch-size", "must be at least 1")
    margin = options.box_margin + 3.0 * perturb_rmsd  # perturbed atoms stay inside the box
    prepared = density.prepared(model.xyz, margin, options.map_b)
    parameters = run_parameters_of(model, options, restraints, kind="ensemble",
                                   map=density.source or "map", map_sha256=data_sha256(density),
                                   n_models=n_models, perturb_rmsd=float(perturb_rmsd))
    # the lock is held from before the store is read or made until the last member is written
    with store_lock.hold(output, exists=is_store(output)) as lock:
        store, weight = open_or_create(
            output, resume, lock, parameters, options.weight,
            lambda: find_weight(model, prepared, restraints, model.xyz, options).weight,
            lambda recorded, held: ResultStore.create(output, model, 1, n_models,
                                                      [density.source or "map"], recorded,
                                                      lock=held))
        log.info("ensemble: %d members, perturbation %.2f Å, weight %.3g", n_models,
                 perturb_rmsd, weight)

        finished = store.finished()[0]  # read once: each call reads the store
        todo = [m for m in range(n_models) if not finished[m]]
        if len(todo) < n_models:
            log.info("resume: %d of %d members already finished", n_models - len(todo), n_models)
        context = RunContext(model, restraints, options, float(weight), perturb_rmsd, options.seed)
        _execute(client, context, {0: prepared}, [(0, chunk) for chunk in batches(todo, batch_size)],
                 store, Progress(len(todo), "ensemble", progress))
    return store.dataset()


def write_outcomes(store: ResultStore, outcomes: list[MemberOutcome]) -> None:
    """Write a finished task's members, one ``write_members`` call per frame."""
    for frame in dict.fromkeys(o.frame for o in outcomes):
        mine = [o for o in outcomes if o.frame == frame]
        b_iso = None if any(o.b_iso is None for o in mine) else np.stack([o.b_iso for o in mine])
        store.write_members(frame, [o.member for o in mine], np.stack([o.xyz for o in mine]),
                            np.stack([o.start_xyz for o in mine]), [o.metrics for o in mine], b_iso)


def share(client, value: object, key: str):
    """A future of ``value`` on the cluster that survives the loss of any worker.

    Scattered data cannot be recomputed: when every worker holding it is lost the scheduler
    forgets it and cancels every task that needs it ("already forgotten"), and its Active
    Memory Manager drops the extra copies a broadcast made, so one lost worker can hold the
    only copy. The result of a task is recomputed instead (the value travels in the task).
    """
    import warnings

    with warnings.catch_warnings():  # a large model's restraints exceed dask's graph warning
        warnings.filterwarnings("ignore", message="Sending large graph")
        return client.submit(hold, value, pure=False, key=key)


def _execute(client, context: RunContext, maps: dict[int, Map], jobs: list[tuple[int, list[int]]],
             store: ResultStore, progress: Progress,
             starts: dict[int, np.ndarray] | None = None) -> None:
    """Submit (frame, members) jobs, write each member as its task finishes."""
    from distributed import as_completed

    if not jobs:
        return
    run = uuid.uuid4().hex  # task keys unique to this run (never from id(), which is reused)
    context_future = share(client, context, f"context-{run}")
    map_futures = {frame: share(client, density, f"map-frame{frame}-{run}")
                   for frame, density in maps.items()}
    futures = [
        client.submit(refine_members, context_future, map_futures[frame], frame, members,
                      None if starts is None else starts.get(frame), retries=3, pure=False,
                      key=f"refine-frame{frame}-members{members[0]}-{members[-1]}-{run}")
        for frame, members in jobs
    ]
    for future in as_completed(futures):
        outcomes = future.result()
        write_outcomes(store, outcomes)
        for _ in outcomes:
            progress.advance()
        future.release()
