"""Variability refinement (``varref series``): one model (or M) per map of a series.

Modes
-----
independent
    Every frame starts from the input model. Simple, embarrassingly parallel; frames at the
    ends of a large motion may lie outside the convergence radius of the consensus model.
chained
    Start at the reference frame (default: the middle frame, usually the consensus) from the
    input model, then walk outward in both directions: frame r±(i+1) starts from the best
    refined member of frame r±i. The walk is a Dask task graph (each frame's task depends on
    its neighbour's), so the two directions run in parallel.

With ``models_per_map`` M > 1, member 0 of each frame starts from the frame's start model
itself and members 1..M-1 from smooth perturbations of it (``perturb_rmsd``); all are kept with
their metrics, and the best by CC_mask is the frame's model (used by export and by the next
frame in chained mode). One weight serves the whole series: searched once on the reference
frame with the input model unless given. Workers read their frame from the map series
themselves (zarr chunk or MRC file); no map travels inside the task graph.
"""

from __future__ import annotations

import logging
from os import PathLike
from pathlib import Path

import numpy as np
import xarray as xr

from varref import __version__
from varref.engine.map_target import map_target_weights
from varref.ensemble.precision import residue_of_atoms
from varref.ensemble.progress import Progress
from varref.ensemble.results import create_store, finished_cells, open_store, run_parameters, write_member
from varref.ensemble.tasks import MemberOutcome, RunContext, refine_members
from varref.errors import InputError
from varref.model import Model
from varref.refine.protocol import RefineOptions, prepare_map
from varref.refine.weight import search_weight
from varref.restraints import Restraints

log = logging.getLogger(__name__)

MODES = ("independent", "chained")


def refine_frame(context: RunContext, series, frame: int, members: list[int],
                 start: np.ndarray | None) -> list[MemberOutcome]:
    """Worker task: read ``frame`` from the series, box it around the start, refine members."""
    base = context.model.xyz if start is None else start
    margin = context.options.box_margin + 3.0 * context.perturb_rmsd + 3.0
    prepared = prepare_map(series.frame(frame), base, margin, context.options.map_b)
    perturbed = [m for m in members if m > 0]
    outcomes = refine_members(context, prepared, frame, perturbed, start=base) if perturbed else []
    if 0 in members:  # member 0: the frame's start model itself, unperturbed
        unperturbed = RunContext(context.model, context.restraints, context.options,
                                 context.weight, 0.0, context.seed)
        outcomes = refine_members(unperturbed, prepared, frame, [0], start=base) + outcomes
    return outcomes


def best_coordinates(outcomes: list[MemberOutcome]) -> np.ndarray:
    """Coordinates of the member with the highest CC_mask (the next frame's start)."""
    return max(outcomes, key=lambda o: o.metrics["cc_mask"]).xyz


def frame_order(n_frames: int, reference: int) -> list[tuple[int, int | None]]:
    """Chained walk: (frame, previous frame) pairs, reference first, then outward both ways."""
    order: list[tuple[int, int | None]] = [(reference, None)]
    for step in range(1, n_frames):
        if reference + step < n_frames:
            order.append((reference + step, reference + step - 1))
        if reference - step >= 0:
            order.append((reference - step, reference - step + 1))
    return order


def run_series(client, model: Model, restraints: Restraints, series, output: str | PathLike,
               options: RefineOptions, mode: str = "chained", reference_frame: int | None = None,
               models_per_map: int = 1, perturb_rmsd: float = 0.5, resume: bool = False,
               progress: bool = True) -> xr.Dataset:
    """Refine ``model`` into every frame of ``series``; results streamed to ``output``."""
    if mode not in MODES:
        raise InputError("--mode", f"must be one of {', '.join(MODES)}")
    n_frames = len(series)
    reference = n_frames // 2 if reference_frame is None else reference_frame
    if not 0 <= reference < n_frames:
        raise InputError("--reference-frame", f"must be in 0..{n_frames - 1}")
    if models_per_map < 1:
        raise InputError("--models-per-map", "must be at least 1")
    parameters = {
        "kind": "series", "model": model.source, "mode": mode, "reference_frame": reference,
        "models_per_map": models_per_map, "perturb_rmsd": perturb_rmsd,
        "resolution": options.resolution, "seed": options.seed, "macro_cycles": options.macro_cycles,
        "n_frames": n_frames, "sources": list(series.sources), "version": __version__,
    }
    if resume and Path(output).exists():
        recorded = run_parameters(open_store(output))
        for key in ("mode", "reference_frame", "models_per_map", "n_frames", "resolution", "seed"):
            if recorded.get(key) != parameters[key]:
                raise InputError(output, f"--resume: the store was made with {key}={recorded.get(key)!r}, "
                                 f"this run has {parameters[key]!r}")
        weight = recorded["weight"]
    else:
        weight = options.weight
        if weight is None:
            reference_map = prepare_map(series.frame(reference), model.xyz, options.box_margin, options.map_b)
            weight = search_weight(model, restraints, reference_map, model.xyz,
                                   map_target_weights(model.atomic_number, model.is_hydrogen),
                                   seed=options.seed).weight
        parameters["weight"] = float(weight)
        create_store(output, model, n_frames, models_per_map, list(series.sources), parameters)
    log.info("series: %d frames, mode %s, reference frame %d, %d model(s) per map, weight %.3g",
             n_frames, mode, reference, models_per_map, weight)

    context = RunContext(model, restraints, options, float(weight), perturb_rmsd, options.seed)
    done = finished_cells(output)
    stored = open_store(output)
    context_future = client.scatter(context, broadcast=True, hash=False)
    members = list(range(models_per_map))
    futures, results = {}, {}
    order = frame_order(n_frames, reference) if mode == "chained" else [(f, None) for f in range(n_frames)]
    for frame, previous in order:
        if done[frame].all():
            # resume: a finished frame still provides its best model to the next one
            cc = stored["cc_mask"].values[frame]
            results[frame] = stored["xyz"].values[frame, int(np.nanargmax(cc))].astype(np.float64)
            continue
        start = None
        if previous is not None:
            start = futures[previous][1] if previous in futures else results[previous]
        task = client.submit(refine_frame, context_future, series, frame, members, start,
                             retries=3, pure=False, key=f"series-frame-{frame}-{id(order)}")
        futures[frame] = (task, client.submit(best_coordinates, task, pure=False,
                                              key=f"series-best-{frame}-{id(order)}"))

    from distributed import as_completed

    bar = Progress(len(futures) * models_per_map, "series", progress)
    for task in as_completed([pair[0] for pair in futures.values()]):
        for outcome in task.result():
            write_member(output, outcome.frame, outcome.member, outcome.xyz, outcome.start_xyz,
                         outcome.metrics)
            bar.advance()
    return open_store(output)


def frame_summary(dataset: xr.Dataset, reference_frame: int) -> dict[str, np.ndarray]:
    """Best member's CC_mask per frame and per-residue displacement from the reference frame."""
    cc = dataset["cc_mask"].values
    best = np.nanargmax(np.where(np.isnan(cc), -np.inf, cc), axis=1)
    frames = np.arange(cc.shape[0])
    xyz = dataset["xyz"].values[frames, best].astype(np.float64)
    displacement = np.linalg.norm(xyz - xyz[reference_frame], axis=-1)  # (frame, atom)
    residue, _ = residue_of_atoms(dataset["chain_id"].values, dataset["residue_number"].values)
    per_residue = np.stack([np.bincount(residue, weights=d) / np.bincount(residue) for d in displacement])
    return {"frames": frames, "best_member": best, "cc_best": cc[frames, best],
            "residue_displacement": per_residue}
