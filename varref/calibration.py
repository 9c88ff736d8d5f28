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
    the scale, CC_mask, CC_box and the fitted coordinates. A refined trial uses ``options``
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
    return {"scale": np.asarray(scale, dtype=float).tolist(), "cc_mask": float(metrics["cc_mask"]),
            "cc_box": float(metrics["cc_box"]), "xyz": fitted}


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


def scan_dataset(results: list[dict], density: Map) -> xr.Dataset:
    """CC versus scale as an xarray Dataset (dim ``scale``), sorted by scale."""
    results = sorted(results, key=lambda r: float(np.mean(r["scale"])))
    scales = np.array([float(np.mean(r["scale"])) for r in results])
    return xr.Dataset(
        {"cc_mask": ("scale", [r["cc_mask"] for r in results]),
         "cc_box": ("scale", [r["cc_box"] for r in results]),
         "voxel_size": (("scale", "axis"), np.outer(scales, density.voxel_size))},
        coords={"scale": scales, "axis": ["x", "y", "z"]},
    )


def _trial_summary(model: Model, density: Map, blurred: Map, resolution: float, scale,
                   refine: bool, restraints, weight, options) -> dict[str, object]:
    """Worker task: one trial without the coordinates (results stay small)."""
    result = fit_at_scale(model, density, resolution, scale, refine=refine, restraints=restraints,
                          weight=weight, blurred=blurred, options=options)
    result.pop("xyz")
    return result


def run_pixel_scan(client, model: Model, density: Map, resolution: float, scales: np.ndarray,
                   refine: bool = False, brent: bool = False, anisotropic: bool = False,
                   restraints=None, weight: float | None = None, progress: bool = True,
                   options=None) -> dict:
    """Scan ``scales`` on Dask (one task per trial), then locate the optimum.

    Returns a dict with ``scan`` (xarray Dataset), ``scale`` (isotropic optimum), ``scale_sigma``,
    ``scale_xyz`` (per-axis optimum when ``anisotropic``, else the isotropic one three times),
    ``best_voxel_size`` and ``cc_mask_best``. ``options`` are the refinement options of
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
    best_scale, sigma, _ = parabola_optimum(scan["scale"].values, scan["cc_mask"].values)

    def negative_cc(scale) -> float:
        return -fit_at_scale(model, prepared, resolution, scale, refine=refine, options=options,
                             restraints=restraints, weight=weight, blurred=blurred)["cc_mask"]

    if brent:
        polished = minimize_scalar(negative_cc, bounds=(best_scale - step, best_scale + step),
                                   method="bounded", options={"xatol": 1e-5})
        if -polished.fun >= scan["cc_mask"].values.max():
            best_scale = float(polished.x)
    scale_xyz = np.full(3, best_scale)
    if anisotropic:
        found = minimize(lambda s: negative_cc(s), scale_xyz, method="Nelder-Mead",
                         options={"xatol": 1e-5, "fatol": 1e-7, "initial_simplex":
                                  np.vstack([scale_xyz, scale_xyz + np.eye(3) * step])})
        scale_xyz = np.asarray(found.x)
    best_cc = -negative_cc(scale_xyz if anisotropic else best_scale)
    scan.attrs.update({"best_scale": best_scale, "scale_sigma": sigma, "resolution": resolution,
                       "centre": "model centroid", "refine": int(refine)})
    return {"scan": scan, "scale": best_scale, "scale_sigma": sigma, "scale_xyz": scale_xyz,
            "best_voxel_size": (density.voxel_size * scale_xyz), "cc_mask_best": best_cc}
