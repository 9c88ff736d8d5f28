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
joint
    All frames are refined together, with a smoothness prior on the second differences of
    the coordinates along the frames (a trajectory prior,
    :mod:`varref.refinement.trajectory`), so that noisy frames borrow strength from their
    neighbours. The trajectory starts from the chained walk's models (``joint_start=
    "chained"``, default: the joint problem needs a start inside its convergence radius at
    every frame, which the input model is not at the ends of a large motion) or from the
    input model at every frame (``"input"``). Scheme ``single``: one Dask task per batch of
    trajectories (member m of every frame is trajectory m), after the chained walk's tasks;
    scheme ``alternating`` (long series): frames on the workers, refined in turn with their
    neighbours fixed until converged (:func:`_run_alternating`). A trajectory is
    all-or-nothing on resume.

With ``models_per_map`` M > 1, member 0 of each frame starts from the frame's start model
itself and members 1..M-1 from smooth perturbations of it (``perturb_rmsd``); all are kept with
their metrics, and the best by CC_mask is the frame's model (used by export and by the next
frame in chained mode). One weight serves the whole series: searched once on the reference
frame with the input model unless given. Workers read their frame from the map series
themselves, only the box around their model (:meth:`~varref.ensemble.mapseries.MapSeriesBase.frame_prepared`:
the zarr chunks the box touches, or the whole MRC file); no map travels inside the task graph.
"""

from __future__ import annotations

import logging
import uuid
from os import PathLike

import numpy as np
import xarray as xr

from varref.ensemble import store_lock
from varref.ensemble.ensemble import batches, share, write_outcomes
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

MODES = ("independent", "chained", "joint")
#: Starts of joint mode.
JOINT_STARTS = ("chained", "input")
#: How joint mode is computed: one task per batch of trajectories, or frames on workers.
JOINT_SCHEMES = ("single", "alternating")
#: Alternating scheme: stop when no frame (of any member) moved by more than this r.m.s. over
#: its atoms in a sweep, Å.
ALTERNATING_TOLERANCE = 0.01
#: Alternating scheme: at most this many sweeps.
ALTERNATING_MAX_SWEEPS = 20

#: Extra box margin of joint mode, Å: every frame is boxed around the common start model
#: once, so the box must also hold the frame's motion away from it.
JOINT_MOTION_MARGIN = 6.0


def refine_frame(context: RunContext, series, frame: int, members: list[int],
                 start: np.ndarray | None) -> list[MemberOutcome]:
    """Worker task: read the box of ``frame`` around the start, refine members."""
    base = context.model.xyz if start is None else start
    margin = context.options.box_margin + 3.0 * context.perturb_rmsd + 3.0
    prepared = series.frame_prepared(frame, base, margin, context.options.map_b)
    perturbed = [m for m in members if m > 0]
    outcomes = refine_members(context, prepared, frame, perturbed, start=base) if perturbed else []
    if 0 in members:  # member 0: the frame's start model itself, unperturbed
        unperturbed = RunContext(context.model, context.restraints, context.options,
                                 context.weight, 0.0, context.seed)
        outcomes = refine_members(unperturbed, prepared, frame, [0], start=base) + outcomes
    return outcomes


def refine_trajectories(context: RunContext, series, members: list[int], prior_weight: float,
                        frame_starts: list[np.ndarray] | None = None,
                        order: int = 2) -> list[MemberOutcome]:
    """Worker task of joint mode: refine trajectories ``members`` through every frame.

    Frame f of trajectory m starts from ``frame_starts[f]`` (default: the input model),
    perturbed (m > 0) with the seed of (run seed, f, m) as in the other modes; every frame is
    boxed around its start with :data:`JOINT_MOTION_MARGIN` more room than the other modes.
    Every frame's box is held in memory (only the box is read from a map-series store).
    """
    from dataclasses import replace

    from varref.ensemble.tasks import member_seed
    from varref.perturbation import perturb_batch
    from varref.refinement.trajectory import refine_joint

    model, options = context.model, context.options
    n_frames = len(series)
    base = [model.xyz] * n_frames if frame_starts is None else list(frame_starts)
    margin = options.box_margin + 3.0 * context.perturb_rmsd + JOINT_MOTION_MARGIN
    maps = [series.frame_prepared(f, base[f], margin, options.map_b) for f in range(n_frames)]
    starts = np.empty((len(members), n_frames, model.n_atoms, 3))
    for k, member in enumerate(members):
        for f in range(n_frames):
            if member == 0:
                starts[k, f] = base[f]
            else:
                starts[k, f] = perturb_batch(model, context.restraints, context.perturb_rmsd,
                                             [member_seed(context.seed, f, member)],
                                             start=base[f], regularisation="to_targets")[0]
    result = refine_joint(model, maps, context.restraints, starts,
                          replace(options, weight=context.weight), prior_weight, order)
    share = result.runtime_s / (len(members) * n_frames)
    outcomes = []
    for k, member in enumerate(members):
        for f in range(n_frames):
            metrics = dict(result.after[k][f])
            metrics.update({"cc_mask_start": result.before[k][f]["cc_mask"],
                            "bond_rmsd_start": result.before[k][f]["bond_rmsd"],
                            "angle_rmsd_start": result.before[k][f]["angle_rmsd"],
                            "weight": float(context.weight), "runtime_s": share})
            outcomes.append(MemberOutcome(f, member, result.xyz[k, f], starts[k, f], metrics,
                                          None))
    return outcomes


def trajectory_starts(context: RunContext, frame: int, members: list[int],
                      base: np.ndarray) -> np.ndarray:
    """(K, N, 3) starts of ``members`` at ``frame``: member 0 is ``base``, member m > 0 its
    perturbation with the seed of (run seed, frame, m), as :func:`refine_trajectories`."""
    from varref.ensemble.tasks import member_seed
    from varref.perturbation import perturb_batch

    out = np.empty((len(members), context.model.n_atoms, 3))
    for k, member in enumerate(members):
        out[k] = base if member == 0 else perturb_batch(
            context.model, context.restraints, context.perturb_rmsd,
            [member_seed(context.seed, frame, member)], start=base,
            regularisation="to_targets")[0]
    return out


def _frame_map(context: RunContext, series, frame: int, base: np.ndarray):
    margin = context.options.box_margin + 3.0 * context.perturb_rmsd + JOINT_MOTION_MARGIN
    return series.frame_prepared(frame, base, margin, context.options.map_b)


def alternating_step(context: RunContext, series, frame: int, xyz: np.ndarray,
                     neighbours: dict[int, np.ndarray], prior_weight: float, base: np.ndarray,
                     macro_cycles: int) -> np.ndarray:
    """Worker task of the alternating scheme: frame ``frame`` of every trajectory refined
    into its own map with the prior's terms of the frame, neighbours fixed (reads one map)."""
    from dataclasses import replace

    from varref.refinement.trajectory import NeighbourPrior, refine_frame_with_neighbours

    prior = NeighbourPrior(prior_weight, frame, len(series), neighbours)
    refined, _ = refine_frame_with_neighbours(
        context.model, _frame_map(context, series, frame, base), context.restraints, xyz,
        replace(context.options, weight=context.weight), prior, macro_cycles)
    return refined


def alternating_outcomes(context: RunContext, series, frame: int, members: list[int],
                         xyz: np.ndarray, starts: np.ndarray, base: np.ndarray,
                         runtime_s: float) -> list[MemberOutcome]:
    """Worker task: metrics of the finished frame's members (start and refined)."""
    from varref.refinement.metrics import model_metrics

    density = _frame_map(context, series, frame, base)
    resolution = context.options.resolution
    outcomes = []
    for k, member in enumerate(members):
        before = model_metrics(context.model, starts[k], context.restraints, density, resolution)
        metrics = model_metrics(context.model, xyz[k], context.restraints, density, resolution)
        metrics.update({"cc_mask_start": before["cc_mask"], "bond_rmsd_start": before["bond_rmsd"],
                        "angle_rmsd_start": before["angle_rmsd"], "weight": float(context.weight),
                        "runtime_s": runtime_s})
        outcomes.append(MemberOutcome(frame, member, xyz[k], starts[k], metrics, None))
    return outcomes


def joint_prior_weight(model: Model, series, options: RefineOptions, weight: float,
                       reference: int, smoothness: float | None,
                       joint_weight: float | None, order: int = 2) -> float:
    """λ of the trajectory prior: ``joint_weight`` if given, else the automatic rule
    (:func:`~varref.refinement.trajectory.automatic_prior_weight`) with h measured on the
    reference frame at the input model and the cut-off period ``smoothness`` frames (default
    :func:`~varref.refinement.trajectory.default_period`)."""
    from varref.refinement.trajectory import automatic_prior_weight, data_curvature, default_period

    if joint_weight is not None:
        log.info("joint: prior weight %.4g (given)", joint_weight)
        return float(joint_weight)
    density = series.frame_prepared(reference, model.xyz, options.box_margin, options.map_b)
    curvature = data_curvature(model, density, model.xyz, options.interpolation)
    period = default_period(len(series)) if smoothness is None else float(smoothness)
    prior_weight = automatic_prior_weight(curvature, weight, period, order)
    log.info("joint: prior weight %.4g (data curvature %.3g per Å² x weight %.3g, cut-off period "
             "%.3g frames)", prior_weight, curvature, weight, period)
    return prior_weight


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
               progress: bool = True, batch_size: int | None = None,
               smoothness: float | None = None, joint_weight: float | None = None,
               joint_start: str = "chained", prior_order: int = 2,
               joint_scheme: str = "single") -> xr.Dataset:
    """Refine ``model`` into every frame of ``series``; results streamed to ``output``.

    A frame's ``models_per_map`` members are refined in tasks of ``batch_size`` members
    (default: all members of a frame in one task); in chained mode the next frame waits for
    all of them and starts from the best. In joint mode a task refines ``batch_size``
    whole trajectories (default: all); ``smoothness`` (cut-off period of the prior, frames)
    or ``joint_weight`` (λ itself) set the trajectory prior, default automatic;
    ``joint_start`` is ``"chained"`` (start from the chained walk's models, one member per
    frame) or ``"input"`` (every frame from the input model); ``prior_order`` 1 replaces the
    second differences of the prior by first differences (for comparisons only);
    ``joint_scheme`` ``"alternating"`` spreads the frames over the workers (module docstring).
    """
    if mode not in MODES:
        raise InputError("--mode", f"must be one of {', '.join(MODES)}")
    if mode != "joint" and (smoothness is not None or joint_weight is not None):
        raise InputError("--smoothness", "only joint mode has a trajectory prior")
    if smoothness is not None and not (np.isfinite(smoothness) and smoothness >= 2):
        raise InputError("--smoothness", f"must be a number of frames >= 2, got {smoothness!r}")
    if joint_weight is not None and not (np.isfinite(joint_weight) and joint_weight >= 0):
        raise InputError("--joint-weight", f"must be a finite number >= 0, got {joint_weight!r}")
    if prior_order not in (1, 2):
        raise InputError("prior_order", "must be 1 or 2")
    if joint_scheme not in JOINT_SCHEMES:
        raise InputError("--joint-scheme", f"must be one of {', '.join(JOINT_SCHEMES)}")
    if joint_scheme == "alternating" and prior_order != 2:
        raise InputError("prior_order", "the alternating scheme has second differences only")
    if joint_start not in JOINT_STARTS:
        raise InputError("--joint-start", f"must be one of {', '.join(JOINT_STARTS)}")
    if mode == "joint" and series.components is not None and len(set(series.components)) > 1:
        # one trajectory prior would join the end of one component to the start of the next
        raise InputError("--mode", "joint mode refines one trajectory; the maps hold "
                         f"{len(set(series.components))} components (3DVA components or "
                         "cryoDRGN directories): run one component at a time")
    if mode == "joint":
        unsupported = [name for name in ("rigid_body", "final_cc", "adp", "rotamer_fit")
                       if getattr(options, name)]
        if unsupported:
            raise InputError("--mode", "joint mode does not support " + ", ".join(
                "--" + name.replace("_", "-") for name in unsupported))
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
        sources=list(series.sources), maps_sha256=series_sha256(series),
        **({"smoothness": smoothness, "joint_weight": joint_weight, "joint_start": joint_start,
            "prior_order": prior_order, "joint_scheme": joint_scheme}
           if mode == "joint" else {}))
    if series.components is not None:  # 3DVA components, cryoDRGN directories: one chain each
        parameters["components"] = list(series.components)

    def search_weight() -> float:
        reference_map = series.frame_prepared(reference, model.xyz, options.box_margin, options.map_b)
        return find_weight(model, reference_map, restraints, model.xyz, options).weight

    # the lock is held from before the store is read or made until the last member is written
    with store_lock.hold(output, exists=is_store(output)) as lock:
        store, weight = open_or_create(
            output, resume, lock, parameters, options.weight, search_weight,
            lambda recorded, held: ResultStore.create(output, model, n_frames, models_per_map,
                                                      list(series.sources), recorded, lock=held))
        if mode == "joint":
            prior_weight = joint_prior_weight(model, series, options, weight, reference,
                                              smoothness, joint_weight, prior_order)
            _run_joint(client, store, model, restraints, series, options, weight, prior_weight,
                       models_per_map, perturb_rmsd, batch_size, progress, reference,
                       joint_start, prior_order, joint_scheme)
        else:
            _run_frames(client, store, model, restraints, series, options, weight, mode, reference,
                        models_per_map, perturb_rmsd, batch_size, progress)
    dataset = store.dataset()
    if models_per_map > 1:
        _log_spread(dataset, reference)
    return dataset


def _run_joint(client, store: ResultStore, model: Model, restraints: Restraints, series,
               options: RefineOptions, weight: float, prior_weight: float, models_per_map: int,
               perturb_rmsd: float, batch_size: int | None, progress: bool, reference: int,
               joint_start: str = "chained", prior_order: int = 2,
               joint_scheme: str = "single") -> None:
    """Submit every unfinished trajectory (member) of joint mode and write its frames.

    With ``joint_start="chained"`` the trajectories start from the chained walk (one member
    per frame, from ``reference`` outward, the tasks of chained mode; not stored), which
    runs again on resume (deterministic, so the re-run trajectory is the lost one)."""
    n_frames = len(series)
    log.info("series: %d frames, mode joint, %d trajectory(ies), weight %.3g, prior weight %.4g",
             n_frames, models_per_map, weight, prior_weight)
    context = RunContext(model, restraints, options, float(weight), perturb_rmsd, options.seed)
    done = store.finished()
    # a trajectory is one problem: it is re-run whole unless every frame of it is finished
    todo = [m for m in range(models_per_map) if not done[:, m].all()]
    if not todo:
        return
    run = uuid.uuid4().hex
    context_future = share(client, context, f"context-{run}")
    size = len(todo) if batch_size is None else batch_size
    frame_starts = None
    if joint_start == "chained":
        walk: dict[int, object] = {}
        for frame, previous in frame_order(n_frames, reference):
            start = None if previous is None else walk[previous]
            task = client.submit(refine_frame, context_future, series, frame, [0], start,
                                 retries=3, pure=False, key=f"series-joint-start{frame}-{run}")
            walk[frame] = client.submit(best_coordinates, task, pure=False,
                                        key=f"series-joint-start-best{frame}-{run}")
        frame_starts = [walk[frame] for frame in range(n_frames)]
    if joint_scheme == "alternating":
        _run_alternating(client, store, context, context_future, series, todo, prior_weight,
                         frame_starts, run, progress)
        return
    tasks = [client.submit(refine_trajectories, context_future, series, chunk, prior_weight,
                           frame_starts, prior_order, retries=3, pure=False,
                           key=f"series-joint-members{chunk[0]}-{chunk[-1]}-{run}")
             for chunk in batches(todo, size)]
    _write_as_completed(store, tasks, len(todo) * n_frames, progress)


def _run_alternating(client, store: ResultStore, context: RunContext, context_future, series,
                     members: list[int], prior_weight: float, frame_starts: list | None,
                     run: str, progress: bool) -> None:
    """Joint mode for long series: block coordinate descent over frames on the workers.

    A sweep refines the frames in three colours f mod 3 — frames of one colour share no
    second-difference triplet, so they are refined in parallel, each with its neighbours
    held at their latest coordinates (Gauss-Seidel over the colours), and every step lowers
    the joint objective. Sweep 1 runs the full macro-cycles, later sweeps one. Stops when no
    frame of any member moved by more than :data:`ALTERNATING_TOLERANCE` r.m.s. over its atoms
    in a sweep (single atoms — a terminal hydrogen — jitter at the minimiser's tolerance), or
    after :data:`ALTERNATING_MAX_SWEEPS` sweeps (logged). Each task reads one frame's map.
    """
    import time

    started = time.perf_counter()
    n_frames = len(series)
    model = context.model
    base = ([model.xyz] * n_frames if frame_starts is None
            else [np.asarray(x) for x in client.gather(frame_starts)])
    starts = client.gather([client.submit(trajectory_starts, context_future, f, members, base[f],
                                          pure=False, key=f"series-alt-start{f}-{run}")
                            for f in range(n_frames)])
    current = [np.array(s) for s in starts]
    converged = False
    for sweep in range(1, ALTERNATING_MAX_SWEEPS + 1):
        previous = [x.copy() for x in current]
        cycles = context.options.macro_cycles if sweep == 1 else 1
        for colour in range(3):
            futures = {f: client.submit(
                alternating_step, context_future, series, f, current[f],
                {o: current[f + o] for o in (-2, -1, 1, 2) if 0 <= f + o < n_frames},
                prior_weight, base[f], cycles, retries=3, pure=False,
                key=f"series-alt-{sweep}-{f}-{run}") for f in range(colour, n_frames, 3)}
            for f, future in futures.items():
                current[f] = np.asarray(future.result())
        change = max(float(np.sqrt(np.mean(np.sum((c - p) ** 2, axis=-1), axis=-1)).max())
                     for c, p in zip(current, previous))
        log.info("joint (alternating): sweep %d, largest frame change %.3g Å r.m.s.", sweep, change)
        if change < ALTERNATING_TOLERANCE:
            converged = True
            break
    if not converged:
        log.warning("joint (alternating): not converged after %d sweeps (largest frame change "
                    "%.3g Å r.m.s.)",
                    ALTERNATING_MAX_SWEEPS, change)
    share = (time.perf_counter() - started) / (n_frames * len(members))
    tasks = [client.submit(alternating_outcomes, context_future, series, f, members, current[f],
                           starts[f], base[f], share, pure=False, key=f"series-alt-out{f}-{run}")
             for f in range(n_frames)]
    _write_as_completed(store, tasks, len(members) * n_frames, progress)


def member_spread(dataset: xr.Dataset, reference_frame: int) -> dict[str, np.ndarray]:
    """Per-frame uncertainty from several members per frame, and where it exceeds the motion.

    ``residue_spread`` (F, R): the finished members' r.m.s. deviation from their mean (no
    superposition: they share the frame's map), averaged over each residue's heavy atoms;
    NaN for a frame with fewer than two finished members. ``residue_frame_motion`` (F, R):
    the displacement of the frame's member mean from the reference frame's member mean
    (heavy-atom mean per residue; the means, not single members, so that the members' own
    scatter is averaged down and is not mistaken for motion). ``residue_motion`` (R,): its
    largest value over the series. ``spread_exceeds_motion`` (F, R) bool: the frame's spread
    is larger than its motion — there the recovered motion is within the members'
    disagreement, i.e. not determined by the data (never set for the reference frame or
    frames with fewer than two members). Also ``residue_label`` (R,). Reads every finished
    member.
    """
    from varref.ensemble.precision import is_heavy, per_residue_mean, residue_of_atoms

    summary = frame_summary(dataset, reference_frame)
    finished = np.asarray(dataset["finished"].values, dtype=bool)
    residue, _ = residue_of_atoms(dataset["residue_index"].values)
    heavy = is_heavy(dataset["element"].values).astype(float)
    shape = summary["residue_displacement"].shape
    spread = np.full(shape, np.nan)
    means = {}
    for frame in summary["frames"]:
        members = np.flatnonzero(finished[frame])
        xyz = dataset["xyz"].isel(frame=int(frame)).values[members].astype(np.float64)
        means[int(frame)] = xyz.mean(axis=0)
        if len(members) < 2:
            continue
        per_atom = np.sqrt(np.mean(np.sum((xyz - means[int(frame)]) ** 2, axis=-1), axis=0))
        spread[frame] = per_residue_mean(per_atom[np.newaxis], residue, heavy)[0]
    frame_motion = np.full(shape, np.nan)
    if reference_frame in means:
        for frame, mean in means.items():
            per_atom = np.linalg.norm(mean - means[reference_frame], axis=-1)
            frame_motion[frame] = per_residue_mean(per_atom[np.newaxis], residue, heavy)[0]
    with np.errstate(invalid="ignore"):
        motion = np.max(np.where(np.isfinite(frame_motion), frame_motion, -np.inf), axis=0)
        motion = np.where(np.isfinite(motion), motion, np.nan)
        exceeds = np.isfinite(spread) & np.isfinite(frame_motion) & (spread > frame_motion)
    exceeds[reference_frame] = False
    return {"residue_spread": spread, "residue_frame_motion": frame_motion,
            "residue_motion": motion, "spread_exceeds_motion": exceeds,
            "residue_label": summary["residue_label"]}


def _log_spread(dataset: xr.Dataset, reference: int) -> None:
    """Log the members' spread per frame and the residues whose spread exceeds their motion."""
    summary = member_spread(dataset, reference)
    spread = summary["residue_spread"]
    if not np.isfinite(spread).any():
        return
    log.info("series: member spread per frame (max over residues, Å): %s", ", ".join(
        f"{s:.2f}" for s in np.nanmax(np.where(np.isfinite(spread), spread, -np.inf), axis=1)))
    flagged = summary["spread_exceeds_motion"].any(axis=0)
    if flagged.any():
        residues = summary["residue_label"][flagged]
        log.warning("series: at %d of %d residue(s) the members' spread exceeds the residue's "
                    "motion over the series, so their motion is not determined by the data: "
                    "%s%s", len(residues), len(flagged), ", ".join(residues[:20]),
                    ", ..." if len(residues) > 20 else "")


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
    run = uuid.uuid4().hex  # task keys unique to this run (never from id(), which is reused)
    context_future = share(client, context, f"context-{run}")
    members = list(range(models_per_map))
    size = models_per_map if batch_size is None else batch_size
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

    _write_as_completed(store, [task for pair in futures.values() for task in pair[0]],
                        len(futures) * models_per_map, progress)


def _write_as_completed(store: ResultStore, tasks: list, n_members: int, progress: bool) -> None:
    """Write every member of ``tasks`` (futures of lists of outcomes) as its task finishes."""
    from distributed import as_completed

    bar = Progress(n_members, "series", progress)
    for task in as_completed(tasks):
        outcomes = task.result()
        write_outcomes(store, outcomes)
        for _ in outcomes:
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
        (F, R) Å, and per residue (R,): ``residue_chain``, ``residue_number``, ``residue_insertion_code``,
        ``residue_label`` (``"A/52A"``).

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
