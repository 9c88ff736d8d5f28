"""Model-to-map fit: Phenix-style correlations and EMRinger.

Correlations (Afonine et al. 2018, Acta Cryst. D74, 814; cctbx ``mmtbx/maps/correlation.py``)
--------------------------------------------------------------------------------------------
Computed by the engine (:mod:`varref.engine.model_map`, :mod:`varref.engine.correlation`):
the model map is the sum of the atoms' electron-scattering Gaussians blurred to the
resolution (``B_blur = 4 d^2``) on the target map's grid; then

* CC_mask: Pearson CC over the molecular mask (atom radii + 1.1 Å probe, shrunk by 0.9 Å);
* CC_box: over the whole map box given;
* CC_volume: over the N highest model-map points, N = mask size;
* CC_peaks: over the union of the N highest points of each map;
* per-residue CC: over the points within (mask radius + 1.1 - 0.9) Å of the residue's atoms.

:func:`map_model_correlations` is the single entry point; the numbers come from
:func:`varref.mapfit.correlations`, the same code refinement reports with.

EMRinger (Barad et al. 2015, Nat. Methods 12, 943)
--------------------------------------------------
For each residue R N D C E Q H L K M F S W Y with N, CA, CB and its gamma atom, the gamma
atom is placed at ideal geometry (:data:`GAMMA_GEOMETRY`) for chi1 = 0, 5, ..., 355
degrees (rotation about CA-CB) and the sigma-scaled map is interpolated there
(cubic spline, :meth:`varref.maps.Map.values_at` with ``order=3``). Each residue gives its
peak value and peak angle. Twenty thresholds run from the mean of the per-residue mean
densities to the largest peak (``t_i = m + i (max - m) / 20``, i = 0..19). At each
threshold the N residues whose peak exceeds it are counted, n_rot of them with the peak
within 30 degrees (inclusive) of 60, 180 or 300 degrees (39 of the 72 samples), and

    Z = (n_rot - N 39/72) / sqrt(N (39/72) (33/72)),   score = 10 Z_max / sqrt(L).

``score`` uses L = number of residues scanned, as Phenix's implementation
(``mmtbx/ringer/em_scoring.py``, ``self.length = len(waves)``) does;
``score_model_length`` uses L = all amino-acid residues of the model. Phenix's code bins
the peaks in 12-sample windows [c-30, c+25] while using 39/72 in Z; we use the 13-sample
windows the 39/72 implies, so Z can differ slightly from Phenix's.
"""

from __future__ import annotations

import math

import numpy as np

from varref.maps import Map
from varref.model import Model
from varref.validation.residues import ResidueTable, dihedrals_of, place_atom

EMRINGER_RESIDUES = ("ARG", "ASN", "ASP", "CYS", "GLU", "GLN", "HIS", "LEU", "LYS", "MET",
                     "PHE", "SER", "TRP", "TYR")
#: Gamma atom name, CB-gamma bond (Å) and CA-CB-gamma angle (degrees); Engh & Huber values.
GAMMA_GEOMETRY = {
    "CYS": ("SG", 1.808, 114.0),
    "SER": ("OG", 1.417, 111.2),
}
GAMMA_GEOMETRY_DEFAULT = ("CG", 1.520, 114.1)
SCAN_STEP = 5.0
N_THRESHOLDS = 20
ROTAMERIC_CENTRES = (60.0, 180.0, 300.0)
ROTAMERIC_HALF_WIDTH = 30.0


def map_model_correlations(model: Model, density: Map, resolution: float
                           ) -> dict[str, object]:
    """CC_mask, CC_box, CC_volume, CC_peaks and per-residue CC (see module docstring).

    Parameters
    ----------
    model
        The model (heavy atoms make the model map; see :mod:`varref.mapfit`).
    density
        The target map; correlations run over its grid as given (CC_box over its box).
    resolution
        Map resolution in Å, for the model-map blur.

    Returns
    -------
    dict with ``available`` (True), ``cc_mask``, ``cc_box``, ``cc_volume``,
    ``cc_peaks``, ``n_mask_points``, ``fraction_atoms_inside``, ``per_residue_cc``
    ((R,) list, NaN where a residue covers < 2 points), ``per_chain_cc`` (chain -> CC) and
    ``method``.
    """
    from varref.mapfit import correlations

    result: dict[str, object] = {"available": True}
    result.update(correlations(model, model.xyz, density, resolution, per_residue=True))
    result.update({
        "fraction_atoms_inside": float(np.mean(density.contains(model.xyz))),
        "method": ("varref.mapfit: Gaussian model map of the heavy atoms (electron scattering, "
                   "B_blur = 4 d^2), cctbx-style molecular mask"),
        "resolution": float(resolution),
    })
    return result


def _rotameric(angle_deg: np.ndarray) -> np.ndarray:
    angle = np.mod(angle_deg, 360.0)
    near = np.zeros(angle.shape, dtype=bool)
    for centre in ROTAMERIC_CENTRES:
        distance = np.abs((angle - centre + 180.0) % 360.0 - 180.0)
        near |= distance <= ROTAMERIC_HALF_WIDTH + 1e-9
    return near


def emringer_scan(residues: ResidueTable, density: Map, step: float = SCAN_STEP
                  ) -> dict[str, np.ndarray]:
    """Chi1 density scans of the EMRinger residues.

    Returns
    -------
    dict with ``residue`` (m,) residue indices, ``angles`` (k,) degrees,
    ``densities`` (m, k) sigma-scaled map values, ``model_chi1`` (m,) degrees.
    """
    scaled = density.normalised()
    xyz = residues.model.xyz
    angles = np.arange(0.0, 360.0, step)
    n, ca, cb = residues.atoms("N"), residues.atoms("CA"), residues.atoms("CB")
    chosen, gamma_points, model_chi1 = [], [], []
    for r in np.flatnonzero(residues.is_amino_acid):
        resname = str(residues.name[r])
        if resname not in EMRINGER_RESIDUES:
            continue
        gamma_name, bond, angle = GAMMA_GEOMETRY.get(resname, GAMMA_GEOMETRY_DEFAULT)
        gamma = residues.atom(r, gamma_name)
        if min(n[r], ca[r], cb[r]) < 0:
            continue
        chosen.append(r)
        gamma_points.append(place_atom(xyz[n[r]], xyz[ca[r]], xyz[cb[r]], bond, angle, angles))
        model_chi1.append(float(dihedrals_of(xyz, np.array([[n[r], ca[r], cb[r], gamma]]))[0])
                          if gamma >= 0 else float("nan"))
    if not chosen:
        return {"residue": np.zeros(0, np.int64), "angles": angles,
                "densities": np.zeros((0, len(angles))), "model_chi1": np.zeros(0)}
    points = np.concatenate(gamma_points)
    values = scaled.values_at(points, order=3).reshape(len(chosen), len(angles))
    return {"residue": np.array(chosen, dtype=np.int64), "angles": angles,
            "densities": values, "model_chi1": np.array(model_chi1)}


def emringer(residues: ResidueTable, density: Map, step: float = SCAN_STEP
             ) -> dict[str, object]:
    """EMRinger score of a model in a map (module docstring for the definition).

    Returns
    -------
    dict with ``score`` (L = residues scanned, as Phenix), ``score_model_length``
    (L = amino-acid residues), ``z_max``, ``optimal_threshold``, ``rotamer_ratio`` (at the
    optimal threshold), ``n_scanned``, ``model_length``, ``thresholds``, ``z_scores``,
    ``n_peaks`` (per threshold), and ``residues`` (``residue``, ``peak_angle``,
    ``peak_value``, ``model_chi1``, ``rotameric_peak``). ``score`` is NaN when no
    threshold has a peak (featureless map).
    """
    scan = emringer_scan(residues, density, step)
    densities, angles = scan["densities"], scan["angles"]
    model_length = int(np.count_nonzero(residues.is_amino_acid))
    n_scanned = len(scan["residue"])
    result: dict[str, object] = {"n_scanned": n_scanned, "model_length": model_length,
                                 "step": step}
    if n_scanned == 0:
        result.update(score=float("nan"), score_model_length=float("nan"), residues=[])
        return result
    peak_index = np.argmax(densities, axis=1)
    peak_value = densities[np.arange(n_scanned), peak_index]
    peak_angle = angles[peak_index]
    rotameric = _rotameric(peak_angle)
    mean_of_means = float(np.mean(densities.mean(axis=1)))
    top = float(peak_value.max())
    thresholds = mean_of_means + np.arange(N_THRESHOLDS) * (top - mean_of_means) / N_THRESHOLDS
    p_rot = 39.0 / 72.0
    z_scores, n_peaks, ratios = [], [], []
    for threshold in thresholds:
        above = peak_value > threshold
        count = int(above.sum())
        n_rot = int(np.count_nonzero(rotameric & above))
        n_peaks.append(count)
        if count == 0:
            z_scores.append(float("nan"))
            ratios.append(float("nan"))
            continue
        z_scores.append((n_rot - count * p_rot) / math.sqrt(count * p_rot * (1.0 - p_rot)))
        ratios.append(n_rot / count)
    z = np.array(z_scores)
    if np.all(np.isnan(z)):
        best = None
    else:
        best = int(np.nanargmax(z))
    z_max = float(z[best]) if best is not None else float("nan")
    result.update({
        "score": 10.0 * z_max / math.sqrt(n_scanned),
        "score_model_length": 10.0 * z_max / math.sqrt(model_length),
        "z_max": z_max,
        "optimal_threshold": float(thresholds[best]) if best is not None else float("nan"),
        "rotamer_ratio": float(ratios[best]) if best is not None else float("nan"),
        "thresholds": [float(t) for t in thresholds],
        "z_scores": [float(v) for v in z],
        "n_peaks": n_peaks,
        "residues": [{"residue": int(r), "peak_angle": float(a), "peak_value": float(v),
                      "model_chi1": float(c), "rotameric_peak": bool(rot)}
                     for r, a, v, c, rot in zip(scan["residue"], peak_angle, peak_value,
                                                scan["model_chi1"], rotameric)],
    })
    return result
