"""Perturbed-start ensembles (``varref ensemble``): how precisely do the data fix the model?

The input model is perturbed N times (smooth random fields, :mod:`varref.perturb`, each
member from its own seed) and every member is refined into the same map with the same weight
(searched once on the input model unless given). Members are refined in batches — one Dask
task refines ``batch_size`` members through the engine's batched kernels — and each finished
member is written to the zarr store at once. The spread of the refined members shows where
the map does not determine the model (Terwilliger et al. 2007).
"""

from __future__ import annotations

import logging
from os import PathLike
from pathlib import Path

import numpy as np
import xarray as xr

from varref import __version__
from varref.ensemble.progress import Progress
from varref.ensemble.results import create_store, finished_cells, open_store, run_parameters, write_member
from varref.ensemble.tasks import RunContext, refine_members
from varref.errors import InputError
from varref.maps import Map
from varref.model import Model
from varref.refine.protocol import RefineOptions, prepare_map
from varref.refine.weight import search_weight
from varref.restraints import Restraints
from varref.engine.map_target import map_target_weights

log = logging.getLogger(__name__)


def batches(items: list[int], size: int) -> list[list[int]]:
    """Consecutive chunks of ``size`` items."""
    return [items[k:k + size] for k in range(0, len(items), size)]


def run_ensemble(client, model: Model, restraints: Restraints, density: Map, output: str | PathLike,
                 n_models: int, perturb_rmsd: float, options: RefineOptions, batch_size: int = 10,
                 resume: bool = False, progress: bool = True) -> xr.Dataset:
    """Refine ``n_models`` perturbed copies of ``model`` into ``density`` on a Dask client.

    Returns the results store opened as an xarray Dataset.
    """
    if n_models < 1:
        raise InputError("--n-models", "must be at least 1")
    margin = options.box_margin + 3.0 * perturb_rmsd  # perturbed atoms stay inside the box
    prepared = prepare_map(density, model.xyz, margin, options.map_b)
    parameters = {
        "kind": "ensemble", "model": model.source, "map": density.source, "n_models": n_models,
        "perturb_rmsd": perturb_rmsd, "resolution": options.resolution, "seed": options.seed,
        "macro_cycles": options.macro_cycles, "batch_size": batch_size, "version": __version__,
    }
    if resume and Path(output).exists():
        recorded = run_parameters(open_store(output))
        for key in ("n_models", "perturb_rmsd", "resolution", "seed", "macro_cycles"):
            if recorded.get(key) != parameters[key]:
                raise InputError(output, f"--resume: the store was made with {key}={recorded.get(key)!r}, "
                                 f"this run has {parameters[key]!r}")
        weight = recorded["weight"]
    else:
        weight = options.weight
        if weight is None:
            weight = search_weight(model, restraints, prepared, model.xyz,
                                   map_target_weights(model.atomic_number, model.is_hydrogen),
                                   seed=options.seed).weight
        parameters["weight"] = float(weight)
        create_store(output, model, 1, n_models, [density.source or "map"], parameters)
    log.info("ensemble: %d members, perturbation %.2f Å, weight %.3g", n_models, perturb_rmsd, weight)

    todo = [m for m in range(n_models) if not finished_cells(output)[0, m]]
    if len(todo) < n_models:
        log.info("resume: %d of %d members already finished", n_models - len(todo), n_models)
    context = RunContext(model, restraints, options, float(weight), perturb_rmsd, options.seed)
    _execute(client, context, {0: prepared}, [(0, chunk) for chunk in batches(todo, batch_size)],
             output, Progress(len(todo), "ensemble", progress))
    return open_store(output)


def _execute(client, context: RunContext, maps: dict[int, Map], jobs: list[tuple[int, list[int]]],
             output, progress: Progress, starts: dict[int, np.ndarray] | None = None) -> None:
    """Submit (frame, members) jobs, write each member as its task finishes."""
    from distributed import as_completed

    if not jobs:
        return
    context_future = client.scatter(context, broadcast=True, hash=False)
    map_futures = {frame: client.scatter(density, broadcast=True, hash=False) for frame, density in maps.items()}
    futures = [
        client.submit(refine_members, context_future, map_futures[frame], frame, members,
                      None if starts is None else starts.get(frame), retries=3, pure=False,
                      key=f"refine-frame{frame}-members{members[0]}-{members[-1]}-{id(jobs)}")
        for frame, members in jobs
    ]
    for future in as_completed(futures):
        for outcome in future.result():
            write_member(output, outcome.frame, outcome.member, outcome.xyz, outcome.start_xyz,
                         outcome.metrics)
            progress.advance()
        future.release()
