"""Pixel-size calibration (``varref pixel-scan``; what Phenix calls magref).

A map's header voxel size is often off by 1–3 %. Against a trusted model, we try scale
factors s around 1: the map's voxel size becomes s·v and its origin is scaled about the
**model's centre** c (origin' = c + s·(origin − c)). For each s the model is rigid-body fitted
(6 parameters, on at most :data:`FIT_ATOMS` heavy atoms; optionally followed by a short
restrained refinement) and scored.

First a translation search (:mod:`varref.translation_search`) finds where the model's
density is — a header error acting about the box corner leaves the density several Å from a
model that is right in the true frame — and every fit starts there. Then two stages (issue 14,
speed): every trial is scored by the cheap atom-centred target (the mean
map value at the heavy atoms, O(atoms)); then a window of trials around that coarse optimum
(:mod:`varref.scan_window`: it grows until the accurate maximum has three scored trials on each
side) gets the accurate score — the CC over the CC_mask region against a model map matched
shell by shell to the map's radial profile (:mod:`varref.scale_score`; CC_mask and CC_box are
recorded too). The accurate trials reuse the coarse stage's rigid fit. With ``refine`` every
trial is refined and scored accurately (one stage).

Why the model centre: scaling about any other point c' adds a translation (1 − s)(c − c')
between model and density, which the rigid fit must then find. For the box centre of a large
map that translation reaches several Å (1 % of a 750 Å box is 3.7 Å; a header error applied
about the box corner adds its own offset, found by the translation search), beyond a rigid
fit's convergence radius at 4 Å — measured
on a 258k-atom model, the scan about the box centre missed the true scale by 0.9 %. About the
model centre the model stays on its density at every trial and only the scale-dependent
stretching remains. The corrected map (``--write-map``) is scaled about the same point, so
the model overlays it without further fitting.

The optimum is the vertex of a least-squares parabola through the best points (the best
trial ± 2 steps), optionally (``--brent``) polished by a bounded Brent search. Its reported
uncertainty is a bootstrap over residue segments (:func:`bootstrap_optimum`) combined with
:data:`SYSTEMATIC_FLOOR`; the parabola fit's own standard error of the vertex (scan noise
only: residual scatter of the score about the parabola against its curvature) is reported
alongside as ``scale_sigma_scan``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import fields, replace

import numpy as np
import xarray as xr

from varref.engine.map_target import map_target_value_gradient, map_target_weights
from varref.maps import Map
from varref.model import Model
from varref.refinement.rigid_body import rigid_body_fit
from varref.scale_score import ProfileMatcher, cc_of_sums, score_pose
from varref.scan_window import HALF_WIDTH, MARGIN, extension, initial_window
from varref.translation_search import translation_search

log = logging.getLogger(__name__)

#: Heavy atoms a trial's rigid fit uses at most (every k-th in model order). Six parameters
#: need few atoms: on the 258k-atom benchmark (171,990 heavy atoms) a fit of 5,000 cost
#: 0.2-0.5 s against 38 s for all atoms in two stages, and the scan found the same optimum
#: with 5,000 and 20,000 (0.98031; docs/benchmarks.md). Models up to this size use all.
FIT_ATOMS = 5_000


def map_centre(density: Map) -> np.ndarray:
    """Cartesian centre of the box (x, y, z), Å."""
    return density.origin + (np.array(density.shape_xyz) - 1) / 2.0 * density.voxel_size


def scaled_map(density: Map, scale: float | np.ndarray, centre: np.ndarray | None = None) -> Map:
    """The map with voxel size × ``scale`` (scalar or per axis x, y, z) about ``centre``
    (default: the box centre)."""
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), (3,))
    centre = map_centre(density) if centre is None else np.asarray(centre, dtype=np.float64)
    return replace(density, voxel_size=density.voxel_size * scale,
                   origin=centre + scale * (density.origin - centre))


def scaling_centre(model: Model, xyz: np.ndarray | None = None) -> np.ndarray:
    """The point maps are scaled about: the centroid of the model's heavy atoms."""
    xyz = model.xyz if xyz is None else xyz
    return xyz[~model.is_hydrogen].mean(axis=0)


def fit_atoms(model: Model, limit: int = FIT_ATOMS) -> np.ndarray:
    """Indices of the atoms a trial's rigid fit uses: the heavy atoms, every k-th in model
    order so that at most ``limit`` remain (all of them on models up to ``limit``)."""
    heavy = np.flatnonzero(~model.is_hydrogen)
    step = max(1, int(np.ceil(len(heavy) / limit)))
    return heavy[::step]


def _atom_subset(model: Model, atoms: np.ndarray) -> Model:
    """The per-atom arrays of ``atoms`` as a Model for a rigid fit (its structure template
    is the full model's: never written)."""
    per_atom = {f.name: getattr(model, f.name)[atoms] for f in fields(model)
                if isinstance(getattr(model, f.name), np.ndarray)}
    return replace(model, **per_atom)


def rigid_pose(model: Model, start: np.ndarray, trial: Map, atoms: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """Rigid-body fit of ``atoms`` of the model (from coordinates ``start``) into ``trial``;
    returns the motion (R, t) found, fitted = start @ R.T + t, to apply to every atom.

    One stage on the map itself: the blurred first stage of
    :func:`~varref.refinement.rigid_body.rigid_body_fit` widens the radius of convergence for
    a start far from the density, which the scan's translation search already provides
    (near the optimum both found the same pose and score to 10⁻⁴ on the 258k-atom benchmark,
    the blurred stage costing 1.5× the time)."""
    from varref.ensemble.precision import kabsch

    subset = _atom_subset(model, atoms)
    weights = map_target_weights(subset.atomic_number, subset.is_hydrogen)
    fitted = rigid_body_fit(subset, start[atoms], trial, weights, blur=0.0)
    return kabsch(start[atoms], fitted)


def atom_centred_score(model: Model, xyz: np.ndarray, trial: Map) -> float:
    """The coarse score: the mean (tricubic) map value at the heavy atoms, i.e. minus the
    atom-centred map target of unit weights over their number."""
    weights = map_target_weights(model.atomic_number, model.is_hydrogen)
    value, _ = map_target_value_gradient(trial.data, trial.origin, trial.voxel_size, xyz, weights)
    return -value / float(weights.sum())


def shell_width(density: Map) -> float:
    """Width (Å⁻¹) of the profile-matching shells of a whole scan: one reciprocal spacing of
    the unscaled box, the same for every trial."""
    return 1.0 / float(np.min(np.array(density.shape_xyz) * density.voxel_size))


def coarse_trial(model: Model, density: Map, scale: float, atoms: np.ndarray,
                 offset: np.ndarray | None = None) -> dict[str, object]:
    """A coarse trial: rigid fit of ``atoms`` at ``scale`` (starting from the model moved by
    ``offset``, Å, e.g. from :func:`varref.translation_search.translation_search`) and the
    atom-centred score.

    Returns ``scale``, ``atom_score``, the fitted motion ``rotation``, ``shift`` (applied to
    ``model.xyz``: fitted = model.xyz @ rotation.T + shift) and ``fit_cpu_seconds`` (this
    thread's CPU time).
    """
    began = time.thread_time()
    offset = np.zeros(3) if offset is None else np.asarray(offset, dtype=np.float64)
    centre = scaling_centre(model)
    trial = scaled_map(density, scale, centre)
    rotation, shift = rigid_pose(model, model.xyz + offset, trial, atoms)
    shift = offset @ rotation.T + shift  # the motion from model.xyz itself
    xyz = model.xyz @ rotation.T + shift
    return {"scale": float(scale), "atom_score": atom_centred_score(model, xyz, trial),
            "rotation": rotation, "shift": shift, "fit_cpu_seconds": time.thread_time() - began}


def fit_at_scale(model: Model, density: Map, resolution: float, scale: float | np.ndarray,
                 start: np.ndarray | None = None, refine: bool = False, restraints=None,
                 weight: float | None = None, options=None, pose: tuple[np.ndarray, np.ndarray] | None = None,
                 matcher: ProfileMatcher | None = None, width: float | None = None
                 ) -> dict[str, object]:
    """Rigid-body fit (and optionally refine) the model into the map scaled by ``scale``
    and score it accurately (:func:`varref.scale_score.score_pose`).

    ``start`` are the coordinates the fit starts from (default the model's); the map is
    scaled about the model's own centre (:func:`scaling_centre`) either way.
    ``density`` should be normalised and boxed around the model. ``pose``
    (R, t) is a rigid fit already made at this scale (by :func:`coarse_trial`), applied to
    ``start``: it is used instead of fitting again. ``matcher`` is a
    :class:`~varref.scale_score.ProfileMatcher` of ``density.data`` (made here when not given) and ``width`` the scan's shell width (default
    :func:`shell_width` of ``density``). A refined trial uses ``options`` (a
    :class:`~varref.refinement.options.RefineOptions`; default one macro-cycle of 50
    iterations, no final stage) with the scan's ``weight``.

    Returns the scale, ``cc_matched`` (the scan's score), its per-segment sums ``sums`` (for
    the bootstrap), ``cc_mask``, ``cc_box``, ``atom_score``, the fitted coordinates ``xyz``
    and this thread's CPU seconds for the fit (``fit_cpu_seconds``, ≈ 0 with ``pose``) and the
    score (``score_cpu_seconds``).
    """
    began = time.thread_time()
    xyz = model.xyz if start is None else start
    centre = scaling_centre(model)
    trial = scaled_map(density, scale, centre)
    if pose is None:
        pose = rigid_pose(model, xyz, trial, fit_atoms(model))
    fitted = xyz @ pose[0].T + pose[1]
    if refine:
        from varref.refinement.options import RefineOptions
        from varref.refinement.pipeline import refine_coordinates

        if weight is None:
            raise ValueError("a refined trial needs the scan's weight (searched once per scan)")
        if options is None:
            options = RefineOptions(resolution=resolution, macro_cycles=1, iterations=50, final_cc=False)
        options = replace(options, weight=weight)
        fitted = refine_coordinates(model, trial, restraints, fitted, options).xyz[0]
    fitted_at = time.thread_time()
    result = score_pose(model, fitted, trial, resolution,
                        shell_width(density) if width is None else width, matcher)
    result.update({"scale": np.asarray(scale, dtype=float).tolist(), "xyz": fitted,
                   "atom_score": atom_centred_score(model, fitted, trial),
                   "fit_cpu_seconds": fitted_at - began,
                   "score_cpu_seconds": time.thread_time() - fitted_at})
    return result


def parabola_optimum(scales: np.ndarray, cc: np.ndarray, half_width: int = 2
                     ) -> tuple[float, float, np.ndarray]:
    """Vertex of a least-squares parabola through the best point ± ``half_width`` neighbours.

    Returns (s_best, sigma_s, coefficients a, b, c of a s² + b s + c). Falls back to the best
    trial with sigma = NaN when the points do not form a maximum (a >= 0) or are too few.
    """
    order = np.argsort(scales)
    scales, cc = np.asarray(scales)[order], np.asarray(cc)[order]
    best = int(np.argmax(cc))
    lo, hi = max(0, best - half_width), min(len(scales), best + half_width + 1)
    s, y = scales[lo:hi], cc[lo:hi]
    if len(s) < 3:
        return float(scales[best]), float("nan"), np.full(3, np.nan)
    centre = s.mean()  # fit in a centred variable for a well-conditioned covariance
    if len(s) > 3:
        coefficients, covariance = np.polyfit(s - centre, y, 2, cov=True)
    else:
        coefficients, covariance = np.polyfit(s - centre, y, 2), np.full((3, 3), np.nan)
    a, b, _ = coefficients
    if a >= 0:
        return float(scales[best]), float("nan"), coefficients
    vertex = -b / (2 * a)
    gradient = np.array([b / (2 * a * a), -1 / (2 * a), 0.0])  # d vertex / d(a, b, c)
    sigma = float(np.sqrt(gradient @ covariance @ gradient)) if np.all(np.isfinite(covariance)) else float("nan")
    vertex = float(np.clip(vertex + centre, s.min(), s.max()))
    return vertex, sigma, coefficients


def parabola_value(scales: np.ndarray, score: np.ndarray, values: np.ndarray, at: float,
                   half_width: int = 2) -> float:
    """``values`` at scale ``at``, from the least-squares parabola through the trials
    :func:`parabola_optimum` uses (the best ``score`` ± ``half_width``); the nearest trial's
    value when they are fewer than 3."""
    order = np.argsort(scales)
    scales, score, values = (np.asarray(a, dtype=float)[order] for a in (scales, score, values))
    best = int(np.nanargmax(score))
    lo, hi = max(0, best - half_width), min(len(scales), best + half_width + 1)
    if hi - lo < 3:
        return float(values[int(np.argmin(np.abs(scales - at)))])
    centre = scales[lo:hi].mean()
    return float(np.polyval(np.polyfit(scales[lo:hi] - centre, values[lo:hi], 2), at - centre))


# --------------------------------------------------------------------------- uncertainty


#: Bootstrap replicates of the optimum, and the seed that makes them reproducible.
BOOTSTRAP_REPLICATES, BOOTSTRAP_SEED = 400, 14

#: Relative systematic error of the method itself, added in quadrature to the bootstrap's
#: sigma: on noise-free maps of perfect models from gemmi's simulator (issue 14 benchmark,
#: docs/benchmarks.md) the optimum was off by up to 0.026 % (1,617 atoms) and 0.16 % (602
#: atoms at 4.5 Å) while the segments agreed to 0.001-0.03 %; the bootstrap cannot see an
#: error every segment shares. (With the FFT box zero-padded for speed the same benchmark gives
#: at most 0.029 % and 0.048 %, but on the 602-atom model at 4.5 Å the optimum moves by up to
#: 0.16 % with the padding: docs/methods-calibration.md. The floor was left as it was.)
SYSTEMATIC_FLOOR = 5e-4


def bootstrap_optimum(scales: np.ndarray, sums: list[np.ndarray],
                      replicates: int = BOOTSTRAP_REPLICATES, seed: int = BOOTSTRAP_SEED,
                      half_width: int = 2) -> tuple[float, np.ndarray]:
    """Standard deviation of the scan's optimum over a bootstrap of the model's segments.

    Each replicate draws the n segments (with their mask points) with replacement — weights
    w_j = times drawn (Efron & Tibshirani 1993) — recomputes every trial's CC from the stored
    sums (no new maps) and refits the parabola's vertex; the spread of the vertices is how
    much the optimum depends on which parts of the structure carry it.

    Returns
    -------
    (sigma, vertices)
        Standard deviation (NaN if fewer than half the replicates give a maximum) and the
        replicate vertices (NaN where the replicate's points form no maximum).
    """
    n_segments = sums[0].shape[0]
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n_segments, np.full(n_segments, 1.0 / n_segments), size=replicates)
    scores = np.stack([cc_of_sums(s, weights) for s in sums], axis=1)  # (replicates, trials)
    vertices = np.full(replicates, np.nan)
    for b, row in enumerate(scores):
        vertex, _, coefficients = parabola_optimum(scales, row, half_width)
        if coefficients[0] < 0:  # a maximum (else the replicate has none to place)
            vertices[b] = vertex
    good = np.isfinite(vertices)
    sigma = float(np.std(vertices[good], ddof=1)) if good.sum() >= max(2, replicates // 2) else float("nan")
    return sigma, vertices


# --------------------------------------------------------------------------- the scan


def scan_dataset(coarse: list[dict], scored: list[dict], density: Map) -> xr.Dataset:
    """The scan as an xarray Dataset (dim ``scale``, sorted): ``atom_score`` (coarse stage,
    every trial; NaN when there was none), ``cc_matched``, ``cc_mask``, ``cc_box`` (the
    accurately scored trials; NaN elsewhere), ``scored``, the CPU seconds of each trial's fit
    and score, and the voxel size."""
    def key(r: dict) -> float:
        return round(float(np.mean(r["scale"])), 10)

    by_scale: dict[float, dict] = {}
    for r in coarse:
        by_scale.setdefault(key(r), {}).update(atom_score=r["atom_score"],
                                               fit_cpu_seconds=r["fit_cpu_seconds"])
    for r in scored:
        entry = by_scale.setdefault(key(r), {})
        entry.update({name: r[name] for name in ("cc_matched", "cc_mask", "cc_box",
                                                 "score_cpu_seconds")})
        if "atom_score" not in entry:  # one-stage (refined) trials
            entry.update(atom_score=r["atom_score"], fit_cpu_seconds=r["fit_cpu_seconds"])
    scales = np.array(sorted(by_scale))

    def column(name: str) -> np.ndarray:
        return np.array([by_scale[s].get(name, np.nan) for s in scales], dtype=float)

    data = {name: ("scale", column(name)) for name in
            ("atom_score", "cc_matched", "cc_mask", "cc_box", "fit_cpu_seconds", "score_cpu_seconds")}
    data["scored"] = ("scale", np.isfinite(column("cc_matched")))
    data["voxel_size"] = (("scale", "axis"), np.outer(scales, density.voxel_size))
    return xr.Dataset(data, coords={"scale": scales, "axis": ["x", "y", "z"]})


def max_offset(model: Model, density: Map, scales: np.ndarray, slack: float = 5.0) -> float:
    """Largest distance (Å) between the model and its density that a header error within
    the scan's range can cause: |1/s − 1| times the model centre's distance from the point
    the error acted about (the map's origin or the frame's), plus ``slack``."""
    centre = scaling_centre(model)
    lever = max(float(np.linalg.norm(centre - density.origin)), float(np.linalg.norm(centre)))
    return float(np.max(np.abs(1.0 / np.asarray(scales) - 1.0))) * lever + slack


def _coarse_task(model: Model, density: Map, scale: float, atoms: np.ndarray,
                 offset: np.ndarray) -> dict[str, object]:
    """Worker task: one coarse trial (fit and atom-centred score)."""
    return coarse_trial(model, density, scale, atoms, offset)


def _score_task(model: Model, density: Map, resolution: float, width: float,
                trials: list[dict], refine: bool, restraints, weight, options) -> list[dict]:
    """Worker task: accurate scores of a batch of trials, with one transform of the map.

    Each trial is ``{"scale": s}`` plus either, from the coarse stage, ``rotation`` and
    ``shift`` (the fitted motion of ``model.xyz``) or the ``offset`` (Å) the fit starts from.
    The coordinates are dropped from the results (they stay small)."""
    matcher = ProfileMatcher(density.data)
    results = []
    for trial in trials:
        pose = (trial["rotation"], trial["shift"]) if "rotation" in trial else None
        start = model.xyz + trial.get("offset", np.zeros(3))
        result = fit_at_scale(model, density, resolution, trial["scale"], start=start,
                              refine=refine, restraints=restraints, weight=weight,
                              options=options, pose=pose, matcher=matcher, width=width)
        result.pop("xyz")  # the per-segment sums stay (segments × 6 floats), for the bootstrap
        results.append(result)
    return results


class _PhaseClock:
    """Wall seconds of consecutive phases (``laps``: name → seconds)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self._last
        self._last = now


def _batches(trials: list[dict], n_batches: int) -> list[list[dict]]:
    """``trials`` dealt into at most ``n_batches`` batches of near-equal size."""
    n_batches = max(1, min(n_batches, len(trials)))
    return [trials[k::n_batches] for k in range(n_batches)]


def run_pixel_scan(client, model: Model, density: Map, resolution: float, scales: np.ndarray,
                   refine: bool = False, brent: bool = False, anisotropic: bool = False,
                   restraints=None, weight: float | None = None, progress: bool = True,
                   options=None, score_all: bool = False) -> dict:
    """Scan ``scales`` on Dask, then locate the optimum.

    First a translation search (:func:`varref.translation_search.translation_search`) finds
    where the model's density is (an offset a header error may cause); every fit starts
    there. Coarse stage: one task per trial (rigid fit, atom-centred score). Accurate stage: the
    window of :mod:`varref.scan_window` around the coarse optimum, grown until the accurate
    maximum has :data:`~varref.scan_window.MARGIN` scored trials on each side, scored in one
    batch per worker (one transform of the map per batch). With ``refine`` every trial is
    refined and scored accurately, one task each; ``score_all`` scores every trial accurately
    after the coarse stage (to check the window rule; as slow as a one-stage scan).

    Returns a dict with ``scan`` (xarray Dataset, :func:`scan_dataset`), ``scale``
    (isotropic optimum of the profile-matched CC, :func:`varref.scale_score.score_pose`),
    ``scale_sigma`` (the bootstrap's sigma over residue segments, :func:`bootstrap_optimum`,
    ⊕ :data:`SYSTEMATIC_FLOOR`), its parts ``scale_sigma_bootstrap``, ``scale_sigma_scan``
    (the parabola fit's: scan noise only, reported for comparison), ``scale_coarse`` (the
    coarse stage's optimum), ``start_offset`` (the translation search's shift, Å),
    ``timings`` (wall seconds of each phase, on this process's clock), ``scale_xyz``
    (per-axis optimum when ``anisotropic``, else the isotropic one three times),
    ``best_voxel_size``, ``cc_matched_best`` and ``cc_mask_best`` (at the optimum: from the
    parabola through the best trials, or a ``brent``/``anisotropic`` polish's own fit there).
    ``options`` are the refinement options of refined trials
    (``refine``); the weight is searched once per scan unless given.
    """
    from distributed import as_completed
    from scipy.optimize import minimize, minimize_scalar

    from varref.ensemble.progress import Progress

    density.require_orthogonal()
    clock = _PhaseClock()
    scales = np.sort(np.asarray(scales, dtype=float))
    span = float(np.max(np.abs(scales - 1.0)))
    # the model must stay inside the box at every trial scale
    prepared = density.prepared(model.xyz, 8.0 + span * float(np.max(density.voxel_size
                                * np.array(density.shape_xyz))))
    width = shell_width(prepared)
    clock.lap("prepare")
    offset = translation_search(model, prepared, resolution, max_offset(model, density, scales))
    start = model.xyz + offset
    clock.lap("translation_search")
    if refine and restraints is None:
        from varref.restraints import build_restraints

        restraints = build_restraints(model)
    if refine and weight is None:
        # one weight for every trial (searched at the header's scale after a rigid fit), so
        # that trials differ only in the scale
        from varref.refinement.options import RefineOptions
        from varref.refinement.pipeline import find_weight

        pose = rigid_pose(model, start, prepared, fit_atoms(model))
        weight = find_weight(model, prepared, restraints, start @ pose[0].T + pose[1],
                             options or RefineOptions(resolution=resolution)).weight
    model_future, map_future = client.scatter([model, prepared], broadcast=True, hash=False)
    n_workers = max(1, len(client.scheduler_info()["workers"]))
    clock.lap("scatter")

    coarse: list[dict] = []
    if not refine:
        atoms = fit_atoms(model)
        futures = [client.submit(_coarse_task, model_future, map_future, float(s), atoms, offset,
                                 pure=False, retries=3) for s in scales]
        with Progress(len(futures), "pixel-scan fits", progress) as bar:
            for future in as_completed(futures):
                coarse.append(future.result())
                bar.advance()
        coarse.sort(key=lambda r: r["scale"])
        coarse_scale, _, _ = parabola_optimum(scales, np.array([r["atom_score"] for r in coarse]))
        pending = np.arange(len(scales)) if score_all else initial_window(scales, coarse_scale)
    else:
        coarse_scale = float("nan")
        pending = np.arange(len(scales))

    clock.lap("coarse_stage")
    scored: dict[int, dict] = {}
    while len(pending):
        trials = [dict(coarse[i]) if coarse else {"scale": float(scales[i]), "offset": offset}
                  for i in pending]
        for trial in trials:
            trial.pop("atom_score", None)
            trial.pop("fit_cpu_seconds", None)
        batches = [[t] for t in trials] if refine else _batches(trials, n_workers)
        futures = [client.submit(_score_task, model_future, map_future, resolution, width, batch,
                                 refine, restraints, weight, options, pure=False, retries=3)
                   for batch in batches]
        with Progress(len(trials), "pixel-scan scores", progress) as bar:
            for future in as_completed(futures):
                for result in future.result():
                    scored[int(np.argmin(np.abs(scales - float(np.mean(result["scale"])))))] = result
                    bar.advance()
        window = np.array(sorted(scored))
        pending = extension(len(scales), window,
                            np.array([scored[i]["cc_matched"] for i in window]), MARGIN)

    clock.lap("accurate_stage")
    window = np.array(sorted(scored))
    scan = scan_dataset(coarse, [scored[i] for i in window], density)
    step = float(np.median(np.diff(scales))) if len(scales) > 1 else 0.01
    best_scale, scan_sigma, _ = parabola_optimum(scales[window],
                                                 np.array([scored[i]["cc_matched"] for i in window]))
    sums = [scored[i]["sums"] for i in window]
    sigma_bootstrap, _ = bootstrap_optimum(scales[window], sums)
    sigma = float(np.hypot(sigma_bootstrap, SYSTEMATIC_FLOOR * best_scale))
    evaluated: dict[tuple, dict] = {}  # polishing fits, by scale
    matcher: ProfileMatcher | None = None

    def fit(scale) -> dict:
        nonlocal matcher
        key = tuple(np.round(np.broadcast_to(np.asarray(scale, dtype=float), (3,)), 12))
        if key not in evaluated:
            matcher = matcher or ProfileMatcher(prepared.data)
            evaluated[key] = fit_at_scale(model, prepared, resolution, scale, start=start,
                                          refine=refine, options=options, restraints=restraints,
                                          weight=weight, matcher=matcher, width=width)
        return evaluated[key]

    def negative_score(scale) -> float:
        return -fit(scale)["cc_matched"]

    if brent:
        polished = minimize_scalar(negative_score, bounds=(best_scale - step, best_scale + step),
                                   method="bounded", options={"xatol": 1e-5})
        if -polished.fun >= np.nanmax(scan["cc_matched"].values):
            best_scale = float(polished.x)
    scale_xyz = np.full(3, best_scale)
    if anisotropic:
        found = minimize(negative_score, scale_xyz, method="Nelder-Mead",
                         options={"xatol": 1e-5, "fatol": 1e-7, "initial_simplex":
                                  np.vstack([scale_xyz, scale_xyz + np.eye(3) * step])})
        scale_xyz = np.asarray(found.x)
    final = tuple(np.round(scale_xyz, 12))
    if final in evaluated:  # a polishing fit at the optimum: its own values
        best = {name: evaluated[final][name] for name in ("cc_matched", "cc_mask")}
    else:  # the scan's optimum: the values there, from the parabola through its trials
        matched_cc = np.array([scored[i]["cc_matched"] for i in window])
        best = {name: parabola_value(scales[window], matched_cc,
                                     np.array([scored[i][name] for i in window]), best_scale)
                for name in ("cc_matched", "cc_mask")}
    clock.lap("optimum")
    scan.attrs.update({"best_scale": best_scale, "scale_sigma": sigma,
                       "scale_sigma_bootstrap": sigma_bootstrap, "scale_sigma_scan": scan_sigma,
                       "systematic_floor": SYSTEMATIC_FLOOR, "coarse_scale": coarse_scale,
                       "score": "CC_mask of the profile-matched model map",
                       "coarse_score": "mean map value at the heavy atoms",
                       "window": f"coarse optimum ± {HALF_WIDTH} trials, grown "
                                 f"until the best has {MARGIN} scored trials each side",
                       "fit_atoms": int(len(fit_atoms(model))), "resolution": resolution,
                       "start_offset": offset.tolist(),
                       "centre": "model centroid", "refine": int(refine),
                       "bootstrap": f"{BOOTSTRAP_REPLICATES} replicates of {sums[0].shape[0]} "
                                    f"residue segments, seed {BOOTSTRAP_SEED}"})
    return {"scan": scan, "scale": best_scale, "scale_sigma": sigma,
            "scale_sigma_bootstrap": sigma_bootstrap, "scale_sigma_scan": scan_sigma,
            "scale_coarse": coarse_scale, "start_offset": offset, "scale_xyz": scale_xyz,
            "best_voxel_size": (density.voxel_size * scale_xyz),
            "cc_matched_best": float(best["cc_matched"]), "cc_mask_best": float(best["cc_mask"]),
            "timings": clock.laps}
