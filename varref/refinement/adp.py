"""Isotropic ADP (B-factor) refinement against a map at fixed coordinates.

The B of every atom (``mode="atom"``) or one B per residue (``mode="group"``) minimises

    T(B) = -CC_mask(rho_model(B), rho_target) + w_B * sum_bonds (B_i - B_j)^2 / ((B_i + B_j)/2)

(kernels and derivatives: :mod:`varref.engine.adp`; methods: ``docs/methods-adp.md``).
CC runs over the cctbx-style molecular mask of the heavy atoms, the CC_mask that
:func:`varref.mapfit.correlations` reports, so the stage optimises the reported number.

1. Overall B: a 1-D search of one additive shift of every B that maximises CC (bounded
   Brent). A constant input B (often 0, 20 or 30 as a placeholder) becomes the best single
   B; a refined input keeps its pattern and only moves its level.
2. Weight: ``w_B`` makes the restraint's gradient response to a random B perturbation a
   fixed fraction (:data:`RESTRAINT_FRACTION`) of the data's response to the same
   perturbation (a stiffness ratio, in the spirit of phenix.refine's shaken-ADP weight).
3. L-BFGS (:mod:`varref.refinement.lbfgs`) over ``u`` with
   ``log B = log B_min + (log B_max - log B_min) * sigmoid(u)``: every B stays in the bounds
   without clipping, and steps are relative changes of B, so a B of 10 and one of 200 move
   alike.

Hydrogens are not in the model map; each rides on its parent's B (the heavy atom it is
bonded to). ``mode="auto"`` picks group B at resolutions worse than
:data:`GROUP_B_RESOLUTION`.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from scipy.optimize import minimize_scalar

from varref.engine.adp import b_similarity_value_gradient, cc_b_value_gradient, correlation_data, sum_by_group
from varref.engine.correlation import mask_radii, molecular_mask
from varref.engine.model_map import merged_coefficients, resolution_blur, scattering_coefficients
from varref.maps import Map
from varref.model import Model
from varref.refinement.lbfgs import minimise_lbfgs
from varref.restraints import Restraints
from varref.restraints.graph import hydrogen_parents as hydrogen_parents_from_bonds

log = logging.getLogger(__name__)

__all__ = ["B_BOUNDS", "GROUP_B_RESOLUTION", "RESTRAINT_FRACTION", "refine_adp", "adp_mode",
           "hydrogen_parents"]

#: Bounds on every B, Å^2.
B_BOUNDS = (1.0, 500.0)
#: ``mode="auto"`` refines one B per residue when the resolution is worse (larger) than this
#: (Å). Near 4 Å a residue volume (~140 Å^3) holds about 1100/d^3 independent map values
#: (Nyquist spacing d/2): ~17 at 4 Å, fewer than the 4 parameters (x, y, z, B) of each of its
#: ~8 heavy atoms, so per-atom B is no longer determined by the map.
GROUP_B_RESOLUTION = 4.0
#: Stiffness of the bonded-B restraint relative to the data (see the module docstring).
RESTRAINT_FRACTION = 1.0
#: L-BFGS stops when T falls by less than this (relative): CC then changes by < 1e-6 per
#: iteration, far below what CC_mask reports resolve.
RELATIVE_TOLERANCE = 1e-6
#: Relative size of the random B perturbation that measures both stiffnesses.
SHAKE = 0.2


def adp_mode(mode: str, resolution: float) -> str:
    """``"atom"`` or ``"group"``: ``mode`` itself, or for ``"auto"`` group B at resolutions
    worse than :data:`GROUP_B_RESOLUTION`."""
    if mode not in ("auto", "atom", "group"):
        raise ValueError(f"mode must be 'auto', 'atom' or 'group', got {mode!r}")
    if mode == "auto":
        return "group" if resolution > GROUP_B_RESOLUTION else "atom"
    return mode


def hydrogen_parents(model: Model, restraints: Restraints | None) -> np.ndarray:
    """Index of the heavy atom each hydrogen rides on (its first bonded heavy atom,
    :func:`varref.restraints.graph.hydrogen_parents`; without a bond the nearest heavy atom of
    its residue, else the nearest heavy atom); -1 for heavy atoms."""
    hydrogen = model.is_hydrogen
    bonds = restraints.bonds.atoms if restraints is not None else np.zeros((0, 2), np.int64)
    parent = hydrogen_parents_from_bonds(hydrogen, bonds)
    if not hydrogen.any():
        return parent
    heavy_atoms = np.flatnonzero(~hydrogen)
    for h in np.flatnonzero(hydrogen & (parent < 0)):
        if len(heavy_atoms) == 0:
            break
        same = heavy_atoms[model.residue_index[heavy_atoms] == model.residue_index[h]]
        pool = same if len(same) else heavy_atoms
        parent[h] = pool[np.argmin(np.sum((model.xyz[pool] - model.xyz[h]) ** 2, axis=1))]
    return parent


def _bounded(u: np.ndarray, t_lo: float, t_hi: float) -> tuple[np.ndarray, np.ndarray]:
    """B(u) and dB/du for ``log B = t_lo + (t_hi - t_lo) sigmoid(u)``."""
    s = 0.5 * (1.0 + np.tanh(0.5 * u))  # sigmoid without overflow
    b = np.exp(t_lo + (t_hi - t_lo) * s)
    return b, b * (t_hi - t_lo) * s * (1.0 - s)


def _unbounded(b: np.ndarray, t_lo: float, t_hi: float) -> np.ndarray:
    s = (np.log(b) - t_lo) / (t_hi - t_lo)
    s = np.clip(s, 1e-6, 1.0 - 1e-6)
    return np.log(s / (1.0 - s))


def refine_adp(model: Model, xyz: np.ndarray, density: Map, resolution: float,
               restraints: Restraints | None, *, mode: str = "auto", iterations: int = 30,
               b_start: np.ndarray | None = None, overall: bool = True,
               restraint_fraction: float = RESTRAINT_FRACTION,
               bounds: tuple[float, float] = B_BOUNDS, seed: int = 0,
               ) -> tuple[np.ndarray, dict[str, object]]:
    """Refine isotropic B against ``density`` at fixed coordinates ``xyz``.

    Parameters
    ----------
    model
        Elements, hydrogens, residues, occupancies and (unless ``b_start``) the input B.
    xyz : (N, 3)
        Coordinates, Å (kept fixed).
    density
        The map (any normalisation; CC is scale-free), e.g. the pipeline's prepared map.
    resolution
        Map resolution, Å: the model map's blur ``4 d^2`` and the ``auto`` mode.
    restraints
        The model's restraints: bonds give the B-restraint pairs and the hydrogens' parents.
        None refines without the restraint.
    mode : {"auto", "atom", "group"}
        Per-atom B, one B per residue, or automatic by resolution (:func:`adp_mode`).
    iterations
        L-BFGS iterations (the stage usually converges in fewer).
    b_start : (N,), optional
        Starting B (default ``model.b_iso``).
    overall
        Run the overall-B search first.
    restraint_fraction
        Stiffness of the bonded-B restraint relative to the data (0 switches it off).
    bounds
        (B_min, B_max), Å^2.
    seed
        Seeds the random perturbation of the weight estimate.

    Returns
    -------
    b_iso : (N,) float64
        Refined B per atom (hydrogens equal to their parent's).
    report : dict
        ``mode``, ``n_parameters``, ``cc_before`` (input B), ``cc_overall`` (after step 1),
        ``cc_after``, ``overall_shift``, ``restraint_weight``, ``iterations``, ``kept``
        (False: CC_mask did not rise, the input B is returned), ``b_min``, ``b_max``,
        ``b_mean`` (heavy atoms), ``runtime_s``. The CCs are CC_mask over the heavy atoms'
        molecular mask, as :func:`varref.mapfit.correlations` reports it.
    """
    started = time.perf_counter()
    chosen = adp_mode(mode, resolution)
    b_lo, b_hi = float(bounds[0]), float(bounds[1])
    if not 0 < b_lo < b_hi:
        raise ValueError(f"bounds must satisfy 0 < B_min < B_max, got {bounds}")
    t_lo, t_hi = np.log(b_lo), np.log(b_hi)
    xyz = np.asarray(xyz, dtype=np.float64)
    b_input = np.asarray(model.b_iso if b_start is None else b_start, dtype=np.float64)
    heavy = np.flatnonzero(~model.is_hydrogen)
    parent = hydrogen_parents(model, restraints)

    # parameters: atom mode, one per heavy atom; group mode, one per residue with a heavy atom
    if chosen == "atom":
        param_of = np.full(model.n_atoms, -1, dtype=np.int64)
        param_of[heavy] = np.arange(len(heavy))
    else:
        _, inverse = np.unique(model.residue_index[heavy], return_inverse=True)
        param_of = np.full(model.n_atoms, -1, dtype=np.int64)
        param_of[heavy] = inverse.ravel()
    n_params = int(param_of[heavy].max()) + 1 if len(heavy) else 0
    hydrogens = np.flatnonzero(parent >= 0)
    param_heavy = param_of[heavy]

    def atom_b(params: np.ndarray) -> np.ndarray:
        b = b_input.copy()
        b[heavy] = params[param_heavy]
        b[hydrogens] = b[parent[hydrogens]]
        return b

    # restraint pairs between parameters (bonds among heavy atoms; in group mode, between residues)
    pairs = np.zeros((0, 2), dtype=np.int64)
    if restraints is not None and len(restraints.bonds) and restraint_fraction > 0:
        bonded = restraints.bonds.atoms
        bonded = bonded[~model.is_hydrogen[bonded].any(axis=1)]
        pairs = param_of[bonded]
        pairs = pairs[pairs[:, 0] != pairs[:, 1]]
        pairs = np.unique(np.sort(pairs, axis=1), axis=0) if len(pairs) else pairs

    occupancy = model.occupancy[heavy]
    blur = resolution_blur(resolution)
    # merged Gaussians (exact enough at the narrowest B the bounds allow; 2-3x cheaper)
    coeff_a, coeff_b = merged_coefficients(*scattering_coefficients(model.element[heavy]),
                                           extra_b=b_lo + blur)
    mask = molecular_mask(xyz[heavy], mask_radii(model.element[heavy]), density.data.shape,
                          density.origin, density.voxel_size)
    data = correlation_data(density.data, density.origin, density.voxel_size, mask)
    xyz_heavy = xyz[heavy]

    def data_term(b_heavy: np.ndarray, gradient: bool = True):
        return cc_b_value_gradient(xyz_heavy, data, coeff_a, coeff_b, b_heavy, occupancy, blur,
                                   gradient=gradient)

    # the input B as the model map reads it (B = 0 is valid there), clipped only if unusable
    usable = np.all(b_input[heavy] + blur + coeff_b.min(axis=1) > 0) if len(heavy) else True
    cc_before = -data_term(b_input[heavy] if usable else np.clip(b_input[heavy], b_lo, b_hi),
                           gradient=False)[0]
    report: dict[str, object] = {"mode": chosen, "n_parameters": n_params,
                                 "cc_before": float(cc_before)}
    if n_params == 0 or len(data.inside) < 2:
        report.update(cc_overall=float(cc_before), cc_after=float(cc_before), overall_shift=0.0,
                      restraint_weight=0.0, iterations=0, kept=False)
        return _finish(b_input.copy(), model, report, started)

    # 1. overall B: one additive shift, bounded Brent on CC
    b_heavy = np.clip(b_input[heavy], b_lo, b_hi)
    shift = 0.0
    if overall:
        centre = float(np.median(b_heavy))
        found = minimize_scalar(lambda s: data_term(np.clip(b_heavy + s, b_lo, b_hi), False)[0],
                                bounds=(b_lo - centre, b_hi - centre), method="bounded",
                                options={"xatol": 0.5})
        if found.fun < -cc_before:
            shift = float(found.x)
            b_heavy = np.clip(b_heavy + shift, b_lo, b_hi)
    cc_overall = -data_term(b_heavy, gradient=False)[0]
    # start parameters: mean B of each parameter's heavy atoms (the atom's own B in atom mode)
    counts = np.bincount(param_heavy, minlength=n_params)
    params0 = np.bincount(param_heavy, weights=b_heavy, minlength=n_params) / counts
    params0 = np.clip(params0, b_lo * 1.0001, b_hi * 0.9999)

    def data_gradient(params: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = data_term(params[param_heavy])
        return value, sum_by_group(grad, param_heavy, n_params)

    # 2. restraint weight: ratio of the gradient responses to one random perturbation
    weight = 0.0
    if len(pairs):
        shaken = np.clip(params0 * (1.0 + SHAKE * np.random.default_rng(seed).standard_normal(n_params)),
                         b_lo, b_hi)
        data_response = data_gradient(shaken)[1] - data_gradient(params0)[1]
        restraint_response = (b_similarity_value_gradient(shaken, pairs)[1]
                              - b_similarity_value_gradient(params0, pairs)[1])
        r_norm = float(np.linalg.norm(restraint_response))
        if r_norm > 0:
            weight = restraint_fraction * float(np.linalg.norm(data_response)) / r_norm

    # 3. L-BFGS in the bounded variable u
    def objective(u: np.ndarray, members: np.ndarray):
        values, grads = np.empty(len(u)), np.empty_like(u)
        for row in range(len(u)):
            params, db_du = _bounded(u[row], t_lo, t_hi)
            value, grad = data_gradient(params)
            if weight > 0:
                r_value, r_grad = b_similarity_value_gradient(params, pairs)
                value, grad = value + weight * r_value, grad + weight * r_grad
            values[row], grads[row] = value, grad * db_du
        return values, grads

    result = minimise_lbfgs(objective, _unbounded(params0, t_lo, t_hi)[np.newaxis],
                            max_iterations=iterations, max_step=1.0, gradient_tolerance=0.0,
                            relative_tolerance=RELATIVE_TOLERANCE)
    params = _bounded(result.x[0], t_lo, t_hi)[0]
    cc_after = -data_term(params[param_heavy], gradient=False)[0]
    report.update(cc_overall=float(cc_overall), cc_after=float(cc_after), overall_shift=shift,
                  restraint_weight=weight, iterations=int(result.iterations[0]),
                  kept=bool(cc_after > cc_before))
    if not report["kept"]:  # the restraint outweighed the map: keep the input B
        report["cc_after"] = float(cc_before)
        return _finish(b_input.copy(), model, report, started)
    return _finish(atom_b(params), model, report, started)


def _finish(b_iso: np.ndarray, model: Model, report: dict, started: float):
    heavy_b = b_iso[~model.is_hydrogen] if (~model.is_hydrogen).any() else b_iso
    report.update(b_min=float(heavy_b.min()) if heavy_b.size else float("nan"),
                  b_max=float(heavy_b.max()) if heavy_b.size else float("nan"),
                  b_mean=float(heavy_b.mean()) if heavy_b.size else float("nan"),
                  runtime_s=time.perf_counter() - started)
    log.info("B (%s)     cc_mask %.4f -> %.4f (overall %.4f), B %.1f..%.1f mean %.1f, %d iterations",
             report["mode"], report["cc_before"], report["cc_after"], report["cc_overall"],
             report["b_min"], report["b_max"], report["b_mean"], report["iterations"])
    return b_iso, report
