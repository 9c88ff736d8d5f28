"""Perturbed-start ensembles (``varref ensemble``): how precisely do the data fix the model?

The input model is perturbed N times (smooth random fields, :mod:`varref.perturbation`, each
member from its own seed) and every member is refined into the same map with the same weight
(searched once on the input model unless given). Members are refined in batches — one Dask
task refines ``batch_size`` members through the engine's batched kernels — and each finished
member is written to the zarr store at once. The spread of the refined members shows where
the map does not determine the model (Terwilliger et al. 2007).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from os import PathLike
from pathlib import Path

import numpy as np
import xarray as xr

from varref import __version__
from varref.ensemble.progress import Progress
from varref.ensemble.results import ResultStore
from varref.ensemble.tasks import RunContext, refine_members
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


def run_parameters_of(model: Model, options: RefineOptions, **extra) -> dict[str, object]:
    """What determines a run's results, recorded in its store and compared on resume: the
    model's content (hash of coordinates and atom names), every refinement option and the
    run's own parameters."""
    digest = hashlib.sha256(np.ascontiguousarray(model.xyz).tobytes())
    digest.update("|".join(model.atom_name.astype(str)).encode())
    recorded = {"model": model.source, "model_sha256": digest.hexdigest(), "version": __version__}
    recorded.update({f"option_{key}": value for key, value in options.as_dict().items()
                     if value is not None and key != "weight"})
    recorded.update(extra)
    return recorded


def check_resume(store: ResultStore, parameters: dict, ignore: tuple[str, ...] = ()) -> None:
    """Refuse to resume ``store`` with parameters that differ from the recorded ones
    (one-line error naming the first differing item)."""
    recorded = store.parameters
    for key in sorted(set(parameters) | {k for k in recorded if k.startswith("option_")}):
        if key in ignore or key == "weight":
            continue
        if recorded.get(key) != parameters.get(key):
            raise InputError(store.path or "store", f"--resume: the store was made with "
                             f"{key}={recorded.get(key)!r}, this run has {parameters.get(key)!r}")


def data_sha256(density: Map) -> str:
    """Content hash of a map's values and grid (compared on resume)."""
    digest = hashlib.sha256(np.ascontiguousarray(density.data).tobytes())
    for values in (density.origin, density.voxel_size):
        digest.update(np.ascontiguousarray(values, dtype=np.float64).tobytes())
    return digest.hexdigest()


def run_ensemble(client, model: Model, restraints: Restraints, density: Map,
                 output: str | PathLike | None, n_models: int, perturb_rmsd: float,
                 options: RefineOptions, batch_size: int = 10, resume: bool = False,
                 progress: bool = True) -> xr.Dataset:
    """Refine ``n_models`` perturbed copies of ``model`` into ``density`` on a Dask client.

    ``output`` is a zarr path (members written as they finish) or None (in memory). Returns
    the results as an xarray Dataset (lazy for zarr).
    """
    if n_models < 1:
        raise InputError("--n-models", "must be at least 1")
    if not np.isfinite(perturb_rmsd) or perturb_rmsd < 0:
        raise InputError("--perturb-rmsd", f"must be a finite number >= 0, got {perturb_rmsd!r}")
    if batch_size < 1:
        raise InputError("--batch-size", "must be at least 1")
    margin = options.box_margin + 3.0 * perturb_rmsd  # perturbed atoms stay inside the box
    prepared = density.prepared(model.xyz, margin, options.map_b)
    parameters = run_parameters_of(model, options, kind="ensemble", map=density.source or "map",
                                   map_sha256=data_sha256(density), n_models=n_models,
                                   perturb_rmsd=float(perturb_rmsd))
    if resume and output is not None and Path(output).exists():
        store = ResultStore.open(output)
        check_resume(store, parameters)
        weight = store.parameters["weight"]
        if options.weight is not None and float(options.weight) != weight:
            raise InputError(output, f"--resume: the store was made with weight={weight!r}, "
                             f"this run has {options.weight!r}")
    else:
        weight = options.weight
        if weight is None:
            weight = find_weight(model, prepared, restraints, model.xyz, options).weight
        parameters["weight"] = float(weight)
        store = ResultStore.create(output, model, 1, n_models, [density.source or "map"], parameters)
    log.info("ensemble: %d members, perturbation %.2f Å, weight %.3g", n_models, perturb_rmsd, weight)

    todo = [m for m in range(n_models) if not store.finished()[0, m]]
    if len(todo) < n_models:
        log.info("resume: %d of %d members already finished", n_models - len(todo), n_models)
    context = RunContext(model, restraints, options, float(weight), perturb_rmsd, options.seed)
    _execute(client, context, {0: prepared}, [(0, chunk) for chunk in batches(todo, batch_size)],
             store, Progress(len(todo), "ensemble", progress))
    return store.dataset()


def _execute(client, context: RunContext, maps: dict[int, Map], jobs: list[tuple[int, list[int]]],
             store: ResultStore, progress: Progress,
             starts: dict[int, np.ndarray] | None = None) -> None:
    """Submit (frame, members) jobs, write each member as its task finishes."""
    from distributed import as_completed

    if not jobs:
        return
    run = uuid.uuid4().hex  # task keys unique to this run (never from id(), which is reused)
    context_future = client.scatter(context, broadcast=True, hash=False)
    map_futures = {frame: client.scatter(density, broadcast=True, hash=False) for frame, density in maps.items()}
    futures = [
        client.submit(refine_members, context_future, map_futures[frame], frame, members,
                      None if starts is None else starts.get(frame), retries=3, pure=False,
                      key=f"refine-frame{frame}-members{members[0]}-{members[-1]}-{run}")
        for frame, members in jobs
    ]
    for future in as_completed(futures):
        for outcome in future.result():
            store.write_member(outcome.frame, outcome.member, outcome.xyz, outcome.start_xyz,
                               outcome.metrics, outcome.b_iso)
            progress.advance()
        future.release()
