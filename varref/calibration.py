"""Pixel-size calibration (``varref pixel-scan``; what Phenix calls magref).

A map's header voxel size is often off by 1–3 %. Against a trusted model, we try scale
factors s around 1: the map's voxel size becomes s·v and its origin is scaled about the
**model's centre** c (origin' = c + s·(origin − c)). For each s the model is rigid-body fitted
(6 parameters; optionally followed by a short restrained refinement) and CC_mask is recorded.

Why the model centre: scaling about any other point c' adds a translation (1 − s)(c − c')
between model and density, which the rigid fit must then find. For the box centre of a large
map that translation reaches several Å (1 % of a 750 Å box is 3.7 Å; a header error applied
about the box corner doubles it), beyond a rigid fit's convergence radius at 4 Å — measured
on a 258k-atom model, the scan about the box centre missed the true scale by 0.9 %. About the
model centre the model stays on its density at every trial and only the scale-dependent
stretching remains. The corrected map (``--write-map``) is scaled about the same point, so
the model overlays it without further fitting.

The optimum is the vertex of a least-squares parabola through the best points (the best
trial ± 2 steps), optionally (``--brent``) polished by a bounded Brent search; its uncertainty comes from
the parabola fit: σ_s is the standard error of the vertex −b/(2a) propagated from the fit's
parameter covariance (residual scatter of CC about the parabola and its curvature).
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import xarray as xr

from varref.engine.map_target import map_target_weights
from varref.engine.model_map import model_map, resolution_blur, scattering_coefficients
from varref.mapfit import correlations
from varref.maps import Map
from varref.model import Model
from varref.refinement.rigid_body import rigid_body_fit

log = logging.getLogger(__name__)


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


def fit_at_scale(model: Model, density: Map, resolution: float, scale: float | np.ndarray,
                 start: np.ndarray | None = None, refine: bool = False, restraints=None,
                 weight: float | None = None, blurred: Map | None = None,
                 options=None) -> dict[str, object]:
    """Rigid-body fit (and optionally refine) the model into the map scaled by ``scale``.

    ``density`` should be normalised and boxed around the model; ``blurred`` (optional) is its
    B = 100 Å² blurred copy for the fit's first stage, made once per scan (scaling the voxel
    size changes that blur by a few per cent, immaterial for a coarse first stage). Returns
    the scale, CC_mask, CC_box, the fitted coordinates, the scan's score ``fsc_average``
    (masked FSC-average to 1/d, :func:`fsc_average_of`) and its per-segment sums ``terms``
    (:func:`fsc_terms`, for the bootstrap). A refined trial uses ``options``
    (a :class:`~varref.refinement.options.RefineOptions`; default one macro-cycle of 50
    iterations, no final stage) with the scan's ``weight``.
    """
    xyz = model.xyz if start is None else start
    centre = scaling_centre(model, xyz)
    trial = scaled_map(density, scale, centre)
    weights = map_target_weights(model.atomic_number, model.is_hydrogen)
    fitted = rigid_body_fit(model, xyz, trial, weights,
                            blurred=None if blurred is None else scaled_map(blurred, scale, centre))
    if refine:
        from varref.refinement.options import RefineOptions
        from varref.refinement.pipeline import refine_coordinates

        if weight is None:
            raise ValueError("a refined trial needs the scan's weight (searched once per scan)")
        if options is None:
            options = RefineOptions(resolution=resolution, macro_cycles=1, iterations=50, final_cc=False)
        options = replace(options, weight=weight)
        fitted = refine_coordinates(model, trial, restraints, fitted, options).xyz[0]
    metrics = correlations(model, fitted, trial, resolution, which=("cc_mask", "cc_box"))
    terms = fsc_terms(model, fitted, trial, resolution)
    return {"scale": np.asarray(scale, dtype=float).tolist(), "cc_mask": float(metrics["cc_mask"]),
            "cc_box": float(metrics["cc_box"]), "fsc_average": float(fsc_average_of(terms)),
            "terms": terms, "xyz": fitted}


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


# --------------------------------------------------------------------------- scale score


#: Most segments a model is cut into for the bootstrap (each costs one model map and one FFT
#: per trial), and the fewest residues a segment has.
MAX_SEGMENTS, MIN_SEGMENT_RESIDUES = 32, 5

#: Bootstrap replicates of the optimum, and the seed that makes them reproducible.
BOOTSTRAP_REPLICATES, BOOTSTRAP_SEED = 400, 14


def residue_segments(model: Model) -> np.ndarray:
    """Segment of every heavy atom: runs of consecutive residues (model order), at most
    :data:`MAX_SEGMENTS` of them and at least :data:`MIN_SEGMENT_RESIDUES` residues long."""
    n_residues = max(int(model.n_residues), 1)
    length = max(MIN_SEGMENT_RESIDUES, int(np.ceil(n_residues / MAX_SEGMENTS)))
    return (model.residue_index[~model.is_hydrogen] // length).astype(np.int64)


def fsc_terms(model: Model, xyz: np.ndarray, trial: Map, resolution: float,
              segments: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-shell sums from which the masked FSC-average of any segment reweighting follows.

    The model map is a sum over segments j, M = Σ_j M_j, and the Fourier transform of the
    masked, mean-removed map is linear in it, so with F_j the transform of segment j's
    masked map and F_o the data's, shell k's FSC of the model reweighted by w_j is

        FSC_k(w) = Σ_j w_j a_jk / sqrt(P_k · wᵀ G_k w),
        a_jk = Σ_{h∈k} Re(F_o F_j*),  G_k,jj' = Σ_{h∈k} Re(F_j F_j'*),  P_k = Σ_{h∈k} |F_o|².

    Only shells with centre ≤ 1/``resolution`` are kept (the coefficients inside that sphere).

    Parameters
    ----------
    model, xyz
        The model and its fitted coordinates.
    trial
        The map at the trial scale (its grid defines the shells).
    resolution
        Map resolution d, Å (the model map's blur 4 d²; the shells' limit 1/d).
    segments
        (n_heavy,) segment of each heavy atom (:func:`residue_segments`).

    Returns
    -------
    dict
        ``counts`` (n_shells,), ``power`` P (n_shells,), ``cross`` a (n_shells, n_seg),
        ``gram`` G (n_shells, n_seg, n_seg), float64.
    """
    from varref.fsc import _Shells, model_mask

    heavy = ~model.is_hydrogen
    segments = residue_segments(model) if segments is None else np.asarray(segments)
    _, segments = np.unique(segments, return_inverse=True)
    n_segments = int(segments.max()) + 1
    mask = model_mask(model, xyz, trial).astype(np.float64)
    shells = _Shells.of(trial.data.shape, trial.voxel_size, None)
    keep = shells.s <= 1.0 / resolution + 1e-12
    index = shells.index
    inside = index < int(np.count_nonzero(keep))  # coefficients of the shells kept
    index, weight = index[inside], shells.weight[inside]
    n_shells = int(np.count_nonzero(keep))

    def transform(data: np.ndarray) -> np.ndarray:
        data = np.asarray(data, dtype=np.float64)
        data = (data - np.sum(data * mask) / np.sum(mask)) * mask
        return np.fft.rfftn(data).ravel()[inside]

    observed = transform(trial.data)
    columns = np.empty((n_segments, observed.size), np.complex128)
    heavy_index = np.flatnonzero(heavy)
    coeff_a, coeff_b = scattering_coefficients(model.element[heavy])
    blur = resolution_blur(resolution)
    for j in range(n_segments):
        atoms = segments == j
        density = model_map(xyz[heavy_index[atoms]], trial.data.shape, trial.origin,
                            trial.voxel_size, coeff_a[atoms], coeff_b[atoms],
                            model.b_iso[heavy_index[atoms]], model.occupancy[heavy_index[atoms]],
                            blur=blur)
        columns[j] = transform(density)
    power = np.bincount(index, weights=weight * np.abs(observed) ** 2, minlength=n_shells)
    cross = np.empty((n_shells, n_segments))
    gram = np.empty((n_shells, n_segments, n_segments))
    for k in range(n_shells):
        in_shell = index == k
        f = columns[:, in_shell] * np.sqrt(weight[in_shell])
        cross[k] = (f @ (observed[in_shell] * np.sqrt(weight[in_shell])).conj()).real
        gram[k] = (f @ f.conj().T).real
    return {"counts": shells.counts[:n_shells].astype(np.float64), "power": power,
            "cross": cross, "gram": gram}


def fsc_average_of(terms: dict[str, np.ndarray], weights: np.ndarray | None = None) -> np.ndarray:
    """FSC-average Σ_k N_k FSC_k(w) / Σ_k N_k from :func:`fsc_terms` (REFMAC's FSCaverage,
    Brown et al. 2015), for segment weights ``weights`` (n_seg,) or (n_boot, n_seg);
    default all ones (the whole model)."""
    cross, gram = terms["cross"], terms["gram"]
    w = np.ones(cross.shape[1]) if weights is None else np.asarray(weights, dtype=np.float64)
    w2 = np.atleast_2d(w)
    numerator = w2 @ cross.T                                       # (n_boot, n_shells)
    model_power = np.einsum("bi,kij,bj->bk", w2, gram, w2)
    with np.errstate(invalid="ignore", divide="ignore"):
        shell_fsc = numerator / np.sqrt(terms["power"][None, :] * model_power)
    counts = terms["counts"][None, :] * np.isfinite(shell_fsc)
    value = np.nansum(counts * np.where(np.isfinite(shell_fsc), shell_fsc, 0.0), axis=1) / counts.sum(axis=1)
    return value if np.ndim(w) == 2 else value[0]


def bootstrap_optimum(scales: np.ndarray, terms: list[dict[str, np.ndarray]],
                      replicates: int = BOOTSTRAP_REPLICATES, seed: int = BOOTSTRAP_SEED,
                      half_width: int = 2) -> tuple[float, np.ndarray]:
    """Standard deviation of the scan's optimum over a bootstrap of the model's segments.

    Each replicate draws the model's n segments with replacement (weights w_j = times drawn,
    Efron & Tibshirani 1993), recomputes every trial's FSC-average with those weights from the
    stored per-shell sums (no new maps), and refits the parabola's vertex; the spread of the
    vertices is how much the optimum depends on which parts of the model carry it.

    Returns
    -------
    (sigma, vertices)
        Standard deviation (NaN if fewer than half the replicates give a maximum) and the
        replicate vertices (NaN where the replicate's points form no maximum).
    """
    n_segments = terms[0]["cross"].shape[1]
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n_segments, np.full(n_segments, 1.0 / n_segments), size=replicates)
    scores = np.stack([fsc_average_of(t, weights) for t in terms], axis=1)  # (replicates, trials)
    vertices = np.full(replicates, np.nan)
    for b, row in enumerate(scores):
        vertex, _, coefficients = parabola_optimum(scales, row, half_width)
        if coefficients[0] < 0:  # a maximum (else the replicate has none to place)
            vertices[b] = vertex
    good = np.isfinite(vertices)
    sigma = float(np.std(vertices[good], ddof=1)) if good.sum() >= max(2, replicates // 2) else float("nan")
    return sigma, vertices


def scan_dataset(results: list[dict], density: Map) -> xr.Dataset:
    """CC versus scale as an xarray Dataset (dim ``scale``), sorted by scale."""
    results = sorted(results, key=lambda r: float(np.mean(r["scale"])))
    scales = np.array([float(np.mean(r["scale"])) for r in results])
    return xr.Dataset(
        {"fsc_average": ("scale", [r["fsc_average"] for r in results]),
         "cc_mask": ("scale", [r["cc_mask"] for r in results]),
         "cc_box": ("scale", [r["cc_box"] for r in results]),
         "voxel_size": (("scale", "axis"), np.outer(scales, density.voxel_size))},
        coords={"scale": scales, "axis": ["x", "y", "z"]},
    )


def _trial_summary(model: Model, density: Map, blurred: Map, resolution: float, scale,
                   refine: bool, restraints, weight, options) -> dict[str, object]:
    """Worker task: one trial without the coordinates (results stay small)."""
    result = fit_at_scale(model, density, resolution, scale, refine=refine, restraints=restraints,
                          weight=weight, blurred=blurred, options=options)
    result.pop("xyz")  # the per-segment sums stay: (shells × segments²) floats, for the bootstrap
    return result


def run_pixel_scan(client, model: Model, density: Map, resolution: float, scales: np.ndarray,
                   refine: bool = False, brent: bool = False, anisotropic: bool = False,
                   restraints=None, weight: float | None = None, progress: bool = True,
                   options=None) -> dict:
    """Scan ``scales`` on Dask (one task per trial), then locate the optimum.

    Returns a dict with ``scan`` (xarray Dataset), ``scale`` (isotropic optimum of the
    FSC-average), ``scale_sigma`` (bootstrap over residue segments, :func:`bootstrap_optimum`),
    ``scale_sigma_scan`` (the parabola fit's, scan noise only), ``scale_xyz`` (per-axis optimum
    when ``anisotropic``, else the isotropic one three times), ``best_voxel_size``,
    ``fsc_average_best`` and ``cc_mask_best``. ``options`` are the refinement options of
    refined trials (``refine``); the weight is searched once per scan unless given.
    """
    from distributed import as_completed
    from scipy.optimize import minimize, minimize_scalar

    from varref.ensemble.progress import Progress

    density.require_orthogonal()
    span = float(np.max(np.abs(np.asarray(scales) - 1.0)))
    # the model must stay inside the box at every trial scale
    prepared = density.prepared(model.xyz, 8.0 + span * float(np.max(density.voxel_size
                                * np.array(density.shape_xyz))))
    blurred = prepared.blurred(100.0).normalised()
    if refine and restraints is None:
        from varref.restraints import build_restraints

        restraints = build_restraints(model)
    if refine and weight is None:
        # one weight for every trial (searched at the header's scale after a rigid fit), so
        # that trials differ only in the scale
        from varref.refinement.options import RefineOptions
        from varref.refinement.pipeline import find_weight

        fitted = fit_at_scale(model, prepared, resolution, 1.0, blurred=blurred)["xyz"]
        weight = find_weight(model, prepared, restraints, fitted,
                             options or RefineOptions(resolution=resolution)).weight
    model_future, map_future, blurred_future = client.scatter([model, prepared, blurred],
                                                              broadcast=True, hash=False)
    futures = [client.submit(_trial_summary, model_future, map_future, blurred_future, resolution,
                             float(s), refine, restraints, weight, options, pure=False, retries=3)
               for s in scales]
    bar = Progress(len(futures), "pixel-scan", progress)
    results = []
    for future in as_completed(futures):
        results.append(future.result())
        bar.advance()
    scan = scan_dataset(results, density)
    step = float(np.median(np.diff(scan["scale"].values))) if len(scales) > 1 else 0.01
    best_scale, scan_sigma, _ = parabola_optimum(scan["scale"].values, scan["fsc_average"].values)
    terms = [r["terms"] for r in sorted(results, key=lambda r: float(np.mean(r["scale"])))]
    sigma, _ = bootstrap_optimum(scan["scale"].values, terms)

    def fit(scale) -> dict:
        return fit_at_scale(model, prepared, resolution, scale, refine=refine, options=options,
                            restraints=restraints, weight=weight, blurred=blurred)

    def negative_score(scale) -> float:
        return -fit(scale)["fsc_average"]

    if brent:
        polished = minimize_scalar(negative_score, bounds=(best_scale - step, best_scale + step),
                                   method="bounded", options={"xatol": 1e-5})
        if -polished.fun >= scan["fsc_average"].values.max():
            best_scale = float(polished.x)
    scale_xyz = np.full(3, best_scale)
    if anisotropic:
        found = minimize(negative_score, scale_xyz, method="Nelder-Mead",
                         options={"xatol": 1e-5, "fatol": 1e-7, "initial_simplex":
                                  np.vstack([scale_xyz, scale_xyz + np.eye(3) * step])})
        scale_xyz = np.asarray(found.x)
    best = fit(scale_xyz if anisotropic else best_scale)
    scan.attrs.update({"best_scale": best_scale, "scale_sigma": sigma, "scale_sigma_scan": scan_sigma,
                       "score": "masked FSC-average to 1/d", "resolution": resolution,
                       "centre": "model centroid", "refine": int(refine),
                       "bootstrap": f"{BOOTSTRAP_REPLICATES} replicates of {terms[0]['cross'].shape[1]} "
                                    f"residue segments, seed {BOOTSTRAP_SEED}"})
    return {"scan": scan, "scale": best_scale, "scale_sigma": sigma, "scale_sigma_scan": scan_sigma,
            "scale_xyz": scale_xyz, "best_voxel_size": (density.voxel_size * scale_xyz),
            "fsc_average_best": best["fsc_average"], "cc_mask_best": best["cc_mask"]}
