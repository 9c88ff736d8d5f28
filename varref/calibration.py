"""Pixel-size calibration (``varref pixel-scan``; what Phenix calls magref).

A map's header voxel size is often off by 1–3 %. Against a trusted model, we try scale
factors s around 1: the map's voxel size becomes s·v and its origin is scaled about the
**model's centre** c (origin' = c + s·(origin − c)). For each s the model is rigid-body fitted
(6 parameters; optionally followed by a short restrained refinement) and scored by the CC
over the CC_mask region against a model map matched shell by shell to the map's radial
profile (:func:`matched_cc`; CC_mask is recorded too).

Why a matched model map (issue 14): scaling a map also scales the width of its features, so
a model map of fixed point-spread function (varref's Gaussian, B + 4 d²) trades a width
mismatch against the position fit and CC_mask peaks off the true scale — by 0.1–2.5 % on maps
from gemmi's simulator (sharp cutoff at 1/d). The matched map takes on the map's own profile
at every trial, leaving only where the density is (docs/methods-calibration.md).

Why the model centre: scaling about any other point c' adds a translation (1 − s)(c − c')
between model and density, which the rigid fit must then find. For the box centre of a large
map that translation reaches several Å (1 % of a 750 Å box is 3.7 Å; a header error applied
about the box corner doubles it), beyond a rigid fit's convergence radius at 4 Å — measured
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
from dataclasses import replace

import numpy as np
import xarray as xr

from varref.engine.map_target import map_target_weights
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
    the scale, CC_mask, CC_box, the fitted coordinates, the scan's score ``cc_matched``
    (:func:`matched_cc`) and its per-segment sums ``sums`` (for the bootstrap). A refined
    trial uses ``options``
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
    # shells one reciprocal spacing of the unscaled box wide, the same Å⁻¹ for every trial
    shell_width = 1.0 / float(np.min(np.array(density.shape_xyz) * density.voxel_size))
    score, sums = matched_cc(model, fitted, trial, resolution, shell_width)
    return {"scale": np.asarray(scale, dtype=float).tolist(), "cc_mask": float(metrics["cc_mask"]),
            "cc_box": float(metrics["cc_box"]), "cc_matched": score, "sums": sums, "xyz": fitted}


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


#: Residues per bootstrap segment, and the most segments (longer ones on huge models).
SEGMENT_RESIDUES, MAX_SEGMENTS = 10, 2000

#: Bootstrap replicates of the optimum, and the seed that makes them reproducible.
BOOTSTRAP_REPLICATES, BOOTSTRAP_SEED = 400, 14

#: Relative systematic error of the method itself, added in quadrature to the bootstrap's
#: sigma: on noise-free maps of perfect models from gemmi's simulator (issue 14 benchmark,
#: docs/benchmarks.md) the optimum was off by up to 0.026 % (1,617 atoms) and 0.16 % (602
#: atoms at 4.5 Å) while the segments agreed to 0.001-0.03 %; the bootstrap cannot see an
#: error every segment shares.
SYSTEMATIC_FLOOR = 5e-4


def residue_segments(model: Model) -> np.ndarray:
    """Segment of every heavy atom: runs of :data:`SEGMENT_RESIDUES` consecutive residues in
    model order (longer runs when that would give more than :data:`MAX_SEGMENTS`)."""
    length = max(SEGMENT_RESIDUES, int(np.ceil(max(int(model.n_residues), 1) / MAX_SEGMENTS)))
    _, segments = np.unique(model.residue_index[~model.is_hydrogen] // length, return_inverse=True)
    return segments.astype(np.int64)


def fixed_shells(shape: tuple[int, int, int], voxel_size: np.ndarray, width: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Shell index ``rint(|h| / width)`` and Friedel weight (2, or 1 on the kx = 0 and
    Nyquist planes) of every coefficient of an ``rfftn`` of the grid, shaped as the transform.

    The shell width is in Å⁻¹ and fixed for a whole scan: shells drawn from each trial's own
    box (whose size in Å grows with the scale) would move their edges from trial to trial.
    """
    nz, ny, nx = shape
    vx, vy, vz = (float(v) for v in voxel_size)
    fz, fy, fx = np.fft.fftfreq(nz, d=vz), np.fft.fftfreq(ny, d=vy), np.fft.rfftfreq(nx, d=vx)
    s = np.sqrt(fz[:, None, None] ** 2 + fy[None, :, None] ** 2 + fx[None, None, :] ** 2)
    weight = np.full(s.shape, 2.0)
    weight[:, :, 0] = 1.0
    if nx % 2 == 0:
        weight[:, :, -1] = 1.0
    return np.rint(s / width).astype(np.int64), weight


def matched_model_map(calculated: np.ndarray, observed: np.ndarray, voxel_size: np.ndarray,
                      shell_width: float) -> np.ndarray:
    """The model map filtered, shell by shell, to the observed map's radial profile.

    Each shell k of the (box, mean-removed) transforms gets the least-squares scale
    k_s = Σ Re(F_o F_c*) / Σ |F_c|² (negative values set to 0), and the model map becomes
    FT⁻¹(k_s F_c): whatever the data's point-spread function — B, a sharp cutoff, sharpening,
    FSC weighting — the model map then has the same, so a trial's score measures where the
    density is, not how wide it is.
    """
    f_c = np.fft.rfftn(calculated - calculated.mean())
    index, weight = fixed_shells(calculated.shape, voxel_size, shell_width)
    f_o = np.fft.rfftn(observed - observed.mean())
    cross = np.bincount(index.ravel(), (weight * (f_o * f_c.conj()).real).ravel())
    power = np.bincount(index.ravel(), (weight * np.abs(f_c) ** 2).ravel())
    scale = np.clip(cross / np.where(power > 0, power, np.inf), 0.0, None)
    return np.fft.irfftn(f_c * scale[index], s=calculated.shape, axes=(0, 1, 2)).astype(np.float32)


def segment_sums(model_values: np.ndarray, map_values: np.ndarray, points: np.ndarray,
                 xyz: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """Per-segment sums (n, Σx, Σy, Σx², Σy², Σxy) of the mask points, each point belonging
    to the segment of its nearest atom; (n_segments, 6) float64."""
    from scipy.spatial import cKDTree

    _, nearest = cKDTree(xyz).query(points)
    owner = segments[nearest]
    n_segments = int(segments.max()) + 1
    x, y = model_values.astype(np.float64), map_values.astype(np.float64)
    return np.stack([np.bincount(owner, w, minlength=n_segments)
                     for w in (np.ones_like(x), x, y, x * x, y * y, x * y)], axis=1)


def cc_of_sums(sums: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Pearson CC of the points of segments taken ``weights`` times each ((n_seg,) or
    (n_boot, n_seg); default once): from the sums of :func:`segment_sums`."""
    w = np.ones(sums.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    n, sx, sy, sxx, syy, sxy = (np.atleast_2d(w) @ sums).T
    with np.errstate(invalid="ignore", divide="ignore"):
        value = (sxy - sx * sy / n) / np.sqrt((sxx - sx * sx / n) * (syy - sy * sy / n))
    return value if np.ndim(w) == 2 else value[0]


def matched_cc(model: Model, xyz: np.ndarray, trial: Map, resolution: float,
               shell_width: float) -> tuple[float, np.ndarray]:
    """The scan's score: CC over the CC_mask region between the map and the model map
    matched to its radial profile (:func:`matched_model_map`), and its per-segment sums
    (:func:`segment_sums`, over :func:`residue_segments`) for the bootstrap."""
    from varref.engine.correlation import mask_radii, molecular_mask
    from varref.simulate import model_density

    heavy = ~model.is_hydrogen
    calculated = matched_model_map(model_density(model, xyz, trial, resolution), trial.data,
                                   trial.voxel_size, shell_width)
    mask = molecular_mask(xyz[heavy], mask_radii(model.element[heavy]), trial.data.shape,
                          trial.origin, trial.voxel_size)
    points = trial.origin + np.argwhere(mask)[:, ::-1] * trial.voxel_size  # (z,y,x) → Å (x,y,z)
    sums = segment_sums(calculated[mask], trial.data[mask], points, xyz[heavy],
                        residue_segments(model))
    return float(cc_of_sums(sums)), sums


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


def scan_dataset(results: list[dict], density: Map) -> xr.Dataset:
    """CC versus scale as an xarray Dataset (dim ``scale``), sorted by scale."""
    results = sorted(results, key=lambda r: float(np.mean(r["scale"])))
    scales = np.array([float(np.mean(r["scale"])) for r in results])
    return xr.Dataset(
        {"cc_matched": ("scale", [r["cc_matched"] for r in results]),
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
    result.pop("xyz")  # the per-segment sums stay (segments × 6 floats), for the bootstrap
    return result


def run_pixel_scan(client, model: Model, density: Map, resolution: float, scales: np.ndarray,
                   refine: bool = False, brent: bool = False, anisotropic: bool = False,
                   restraints=None, weight: float | None = None, progress: bool = True,
                   options=None) -> dict:
    """Scan ``scales`` on Dask (one task per trial), then locate the optimum.

    Returns a dict with ``scan`` (xarray Dataset), ``scale`` (isotropic optimum of the
    profile-matched CC, :func:`matched_cc`), ``scale_sigma`` (the bootstrap's sigma over residue
    segments, :func:`bootstrap_optimum`, ⊕ :data:`SYSTEMATIC_FLOOR`), its parts
    ``scale_sigma_bootstrap``, ``scale_sigma_scan`` (the parabola fit's: scan noise only,
    reported for comparison), ``scale_xyz`` (per-axis optimum
    when ``anisotropic``, else the isotropic one three times), ``best_voxel_size``,
    ``cc_matched_best`` and ``cc_mask_best``. ``options`` are the refinement options of
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
    best_scale, scan_sigma, _ = parabola_optimum(scan["scale"].values, scan["cc_matched"].values)
    sums = [r["sums"] for r in sorted(results, key=lambda r: float(np.mean(r["scale"])))]
    sigma_bootstrap, _ = bootstrap_optimum(scan["scale"].values, sums)
    sigma = float(np.hypot(sigma_bootstrap, SYSTEMATIC_FLOOR * best_scale))

    def fit(scale) -> dict:
        return fit_at_scale(model, prepared, resolution, scale, refine=refine, options=options,
                            restraints=restraints, weight=weight, blurred=blurred)

    def negative_score(scale) -> float:
        return -fit(scale)["cc_matched"]

    if brent:
        polished = minimize_scalar(negative_score, bounds=(best_scale - step, best_scale + step),
                                   method="bounded", options={"xatol": 1e-5})
        if -polished.fun >= scan["cc_matched"].values.max():
            best_scale = float(polished.x)
    scale_xyz = np.full(3, best_scale)
    if anisotropic:
        found = minimize(negative_score, scale_xyz, method="Nelder-Mead",
                         options={"xatol": 1e-5, "fatol": 1e-7, "initial_simplex":
                                  np.vstack([scale_xyz, scale_xyz + np.eye(3) * step])})
        scale_xyz = np.asarray(found.x)
    best = fit(scale_xyz if anisotropic else best_scale)
    scan.attrs.update({"best_scale": best_scale, "scale_sigma": sigma,
                       "scale_sigma_bootstrap": sigma_bootstrap, "scale_sigma_scan": scan_sigma,
                       "systematic_floor": SYSTEMATIC_FLOOR,
                       "score": "CC_mask of the profile-matched model map", "resolution": resolution,
                       "centre": "model centroid", "refine": int(refine),
                       "bootstrap": f"{BOOTSTRAP_REPLICATES} replicates of {sums[0].shape[0]} "
                                    f"residue segments, seed {BOOTSTRAP_SEED}"})
    return {"scan": scan, "scale": best_scale, "scale_sigma": sigma,
            "scale_sigma_bootstrap": sigma_bootstrap, "scale_sigma_scan": scan_sigma,
            "scale_xyz": scale_xyz, "best_voxel_size": (density.voxel_size * scale_xyz),
            "cc_matched_best": best["cc_matched"], "cc_mask_best": best["cc_mask"]}
