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
import uuid
from os import PathLike

import numpy as np
import xarray as xr

from varref.ensemble import store_lock
from varref.ensemble.ensemble import batches
from varref.ensemble.fingerprint import series_sha256
from varref.ensemble.progress import Progress
from varref.ensemble.results import ResultStore, best_of
from varref.ensemble.series_inputs import chained_walk
from varref.ensemble.resume import is_store, open_or_create, run_parameters_of
from varref.ensemble.tasks import MemberOutcome, RunContext, refine_members
from varref.errors import InputError
from varref.model import Model
from varref.refinement.options import RefineOptions
from varref.refinement.pipeline import find_weight
from varref.restraints import Restraints

log = logging.getLogger(__name__)

MODES = ("independent", "chained")


def refine_frame(context: RunContext, series, frame: int, members: list[int],
                 start: np.ndarray | None) -> list[MemberOutcome]:
    """Worker task: read ``frame`` from the series, box it around the start, refine members."""
    base = context.model.xyz if start is None else start
    margin = context.options.box_margin + 3.0 * context.perturb_rmsd + 3.0
    prepared = series.frame(frame).prepared(base, margin, context.options.map_b)
    perturbed = [m for m in members if m > 0]
    outcomes = refine_members(context, prepared, frame, perturbed, start=base) if perturbed else []
    if 0 in members:  # member 0: the frame's start model itself, unperturbed
        unperturbed = RunContext(context.model, context.restraints, context.options,
                                 context.weight, 0.0, context.seed)
        outcomes = refine_members(unperturbed, prepared, frame, [0], start=base) + outcomes
    return outcomes


def best_coordinates(*batches: list[MemberOutcome]) -> np.ndarray:
    """The next frame's start: coordinates of the best member over a frame's member batches
    (:func:`~varref.ensemble.results.best_of`, the rule the store applies), rounded to
    float32 exactly as the store keeps them, so that a resumed run, which reads them back
    from the store, continues bit for bit as an undisturbed run does."""
    outcomes = sorted((o for batch in batches for o in batch), key=lambda o: o.member)
    cc = np.array([o.metrics.get("cc_mask", np.nan) for o in outcomes], dtype=np.float64)
    best = outcomes[best_of(np.ones(len(outcomes), bool), cc)]
    return np.asarray(best.xyz, dtype=np.float64).astype(np.float32).astype(np.float64)


def frame_order(n_frames: int, reference: int) -> list[tuple[int, int | None]]:
    """Chained walk: (frame, previous frame) pairs, reference first, then outward both ways."""
    order: list[tuple[int, int | None]] = [(reference, None)]
    for step in range(1, n_frames):
        if reference + step < n_frames:
            order.append((reference + step, reference + step - 1))
        if reference - step >= 0:
            order.append((reference - step, reference - step + 1))
    return order


def run_series(client, model: Model, restraints: Restraints, series,
               output: str | PathLike | None,
               options: RefineOptions, mode: str = "chained", reference_frame: int | None = None,
               models_per_map: int = 1, perturb_rmsd: float = 0.5, resume: bool = False,
               progress: bool = True, batch_size: int | None = None) -> xr.Dataset:
    """Refine ``model`` into every frame of ``series``; results streamed to ``output``.

    A frame's ``models_per_map`` members are refined in tasks of ``batch_size`` members
    (default: all members of a frame in one task); in chained mode the next frame waits for
    all of them and starts from the best.
    """
    if mode not in MODES:
        raise InputError("--mode", f"must be one of {', '.join(MODES)}")
    n_frames = len(series)
    reference = n_frames // 2 if reference_frame is None else reference_frame
    if not 0 <= reference < n_frames:
        raise InputError("--reference-frame", f"must be in 0..{n_frames - 1}")
    if models_per_map < 1:
        raise InputError("--members", "must be at least 1")
    if batch_size is not None and batch_size < 1:
        raise InputError("--batch-size", "must be at least 1")
    parameters = run_parameters_of(
        model, options, restraints, kind="series", mode=mode, reference_frame=reference,
        models_per_map=models_per_map, perturb_rmsd=float(perturb_rmsd), n_frames=n_frames,
        sources=list(series.sources), maps_sha256=series_sha256(series))
    if series.components is not None:  # 3DVA components, cryoDRGN directories: one chain each
        parameters["components"] = list(series.components)

    def search_weight() -> float:
        reference_map = series.frame(reference).prepared(model.xyz, options.box_margin, options.map_b)
        return find_weight(model, reference_map, restraints, model.xyz, options).weight

    # the lock is held from before the store is read or made until the last member is written
    with store_lock.hold(output, exists=is_store(output)) as lock:
        store, weight = open_or_create(
            output, resume, lock, parameters, options.weight, search_weight,
            lambda recorded, held: ResultStore.create(output, model, n_frames, models_per_map,
                                                      list(series.sources), recorded, lock=held))
        _run_frames(client, store, model, restraints, series, options, weight, mode, reference,
                    models_per_map, perturb_rmsd, batch_size, progress)
    return store.dataset()


def _run_frames(client, store: ResultStore, model: Model, restraints: Restraints, series,
                options: RefineOptions, weight: float, mode: str, reference: int,
                models_per_map: int, perturb_rmsd: float, batch_size: int | None,
                progress: bool) -> None:
    """Submit every unfinished frame (chained: as a graph along the walk) and write members."""
    n_frames = len(series)
    log.info("series: %d frames, mode %s, reference frame %d, %d model(s) per map, weight %.3g",
             n_frames, mode, reference, models_per_map, weight)

    context = RunContext(model, restraints, options, float(weight), perturb_rmsd, options.seed)
    done = store.finished()
    context_future = client.scatter(context, broadcast=True, hash=False)
    members = list(range(models_per_map))
    size = models_per_map if batch_size is None else batch_size
    run = uuid.uuid4().hex  # task keys unique to this run (never from id(), which is reused)
    futures, results = {}, {}
    order = (chained_walk(series.components, n_frames, reference) if mode == "chained"
             else [(f, None) for f in range(n_frames)])
    for frame, previous in order:
        if done[frame].all():
            # resume: a finished frame still provides its best model to the next one
            results[frame] = store.member_xyz(frame, store.best_member(frame))
            continue
        start = None
        if previous is not None:
            start = futures[previous][1] if previous in futures else results[previous]
        tasks = [client.submit(refine_frame, context_future, series, frame, chunk, start,
                               retries=3, pure=False,
                               key=f"series-frame{frame}-members{chunk[0]}-{chunk[-1]}-{run}")
                 for chunk in batches(members, size)]
        futures[frame] = (tasks, client.submit(best_coordinates, *tasks, pure=False,
                                               key=f"series-best-{frame}-{run}"))

    from distributed import as_completed

    bar = Progress(len(futures) * models_per_map, "series", progress)
    for task in as_completed([task for pair in futures.values() for task in pair[0]]):
        for outcome in task.result():
            store.write_member(outcome.frame, outcome.member, outcome.xyz, outcome.start_xyz,
                               outcome.metrics, outcome.b_iso)
            bar.advance()


def frame_summary(dataset: xr.Dataset, reference_frame: int) -> dict[str, np.ndarray]:
    """Best member's CC_mask per frame and per-residue displacement from the reference frame.

    Reads one member per frame (the finished member with the highest CC_mask). Displacements
    are means over each residue's heavy atoms (not H or D), residues grouped by
    ``residue_index`` in file order. A frame without a finished member has ``best_member``
    −1 and NaN CC and displacements (so has every frame if the reference frame has none).

    Returns
    -------
    dict
        ``frames`` (F,), ``best_member`` (F,) int, ``cc_best`` (F,), ``residue_displacement``
        (F, R) Å, and per residue (R,): ``residue_chain``, ``residue_number``,
        ``residue_insertion_code``, ``residue_label`` (``"A/52A"``).

    Examples
    --------
    >>> summary = frame_summary(open_results("series.zarr"), reference_frame=5)  # doctest: +SKIP
    >>> summary["residue_displacement"].shape                                    # doctest: +SKIP
    (11, 46)
    """
    from varref.ensemble.precision import is_heavy, per_residue_mean, residue_coords, residue_of_atoms

    finished = np.asarray(dataset["finished"].values, dtype=bool)
    cc = np.where(finished, np.asarray(dataset["cc_mask"].values, dtype=float), np.nan)
    score = np.where(np.isnan(cc), -np.inf, cc)
    best = np.where(finished.any(axis=1), np.argmax(score, axis=1), -1)
    frames = np.arange(cc.shape[0])
    n_atoms = dataset.sizes["atom"]
    xyz = np.full((len(frames), n_atoms, 3), np.nan)
    for frame in frames[best >= 0]:  # one chunk per frame
        xyz[frame] = dataset["xyz"].isel(frame=int(frame), member=int(best[frame])).values
    displacement = np.linalg.norm(xyz - xyz[reference_frame], axis=-1)  # (frame, atom)
    residue, first_atoms = residue_of_atoms(dataset["residue_index"].values)
    heavy = is_heavy(dataset["element"].values).astype(float)
    per_residue = per_residue_mean(np.nan_to_num(displacement), residue, heavy)
    per_residue[best < 0] = np.nan
    if best[reference_frame] < 0:
        per_residue[:] = np.nan
    labels = {name: values for name, (_, values, _) in residue_coords(dataset, first_atoms).items()}
    cc_best = np.where(best >= 0, cc[frames, np.maximum(best, 0)], np.nan)
    return {"frames": frames, "best_member": best, "cc_best": cc_best,
            "residue_displacement": per_residue,
            "residue_chain": labels["residue_chain"], "residue_number": labels["residue_number"],
            "residue_insertion_code": labels["residue_insertion_code"],
            "residue_label": labels["residue_label"]}
