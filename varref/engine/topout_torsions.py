"""Torsion restraints with a top-out potential (reference-model and rotamer restraints), degrees.

The potential (cctbx ``dihedral`` with ``top_out=True``, used by phenix reference-model
restraints; Headd et al. 2012) is, per restraint r with residual Δ (degrees),

    E(Δ) = l² (1 − exp(−w Δ'² / l²)),      w = 1/σ², l = limit (degrees),
    Δ' = sign(Δ) max(|Δ| − f, 0),

f >= 0 a flat-bottom half-width (0 for the plain top-out; rotamer restraints use the
rotamer's spread, so that a chi anywhere in its rotamer's normal range feels no force);
E and dE/dΔ are continuous at |Δ| = f.

harmonic near the reference (E ≈ w Δ², the ordinary torsion restraint with sigma σ) and
flat far from it (E → l²), so a real conformational change is not resisted. The force
dE/dΔ = 2 w Δ exp(−w Δ²/l²) is largest at |Δ| = σ l / √2 and decays like a Gaussian beyond.

``atoms`` (n, 4) int64 ``(i, j, k, l)``: dihedral about the ``j-k`` bond, IUPAC sign (as
:mod:`varref.engine.torsions`). ``period`` p >= 1: the residual is ``φ − ideal`` reduced to
``(−180/p, 180/p]`` (p = 2 for torsions ending in one of two chemically equivalent atoms,
e.g. Asp OD1/OD2). ``limit`` must be finite and > 0.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from varref.engine.torsions import add_dihedral_gradient, dihedral_deg, torsion_values


@njit(nogil=True, cache=True)
def wrap_half_open_deg(delta: float, period: int) -> float:
    """``delta`` (degrees) reduced to ``(-180/period, 180/period]``."""
    span = 360.0 / period
    return delta - span * math.ceil(delta / span - 0.5)


@njit(nogil=True, cache=True)
def topout_energy(delta: float, weight: float, limit: float, flat: float) -> tuple[float, float]:
    """``E = l² (1 − exp(−w Δ'²/l²))`` and ``dE/dΔ`` for one residual Δ (degrees), with
    ``Δ' = sign(Δ) max(|Δ| − f, 0)``."""
    if delta > flat:
        delta -= flat
    elif delta < -flat:
        delta += flat
    else:
        return 0.0, 0.0
    top = limit * limit
    g = math.exp(-weight * delta * delta / top)  # underflows to 0 far out: no NaN
    return top * (1.0 - g), 2.0 * weight * delta * g


@njit(nogil=True, cache=True)
def topout_torsion_value_and_gradient(
    xyz: np.ndarray,
    atoms: np.ndarray,
    ideal: np.ndarray,
    weight: np.ndarray,
    limit: np.ndarray,
    period: np.ndarray,
    flat: np.ndarray,
    grad: np.ndarray,
) -> float:
    """Top-out torsion target ``T = Σ_r l_r² (1 − exp(−w_r Δ_r² / l_r²))`` and gradient.

    Parameters
    ----------
    xyz : (N, 3) float64
        Coordinates in Å.
    atoms : (n, 4) int64
        Dihedral atoms.
    ideal : (n,) float64
        Reference torsion, degrees.
    weight : (n,) float64
        1/σ², degrees⁻².
    limit : (n,) float64
        Top-out limit l > 0, degrees; the target of one restraint never exceeds l².
    period : (n,) int64
        Periodicity p >= 1 of the residual.
    flat : (n,) float64
        Flat-bottom half-width f >= 0, degrees (0: none).
    grad : (N, 3) float64
        Gradient buffer; dT/dxyz is added to it.

    Returns
    -------
    float
        The target value T.

    Notes
    -----
    dT/dx = dE/dΔ · dφ/dx with dφ/dx (radians per Å, times 180/π) after Blondel & Karplus
    (1996), as in :func:`varref.engine.torsions.torsion_value_and_gradient`:
    dφ/dx_i = −|b2| m/|m|², dφ/dx_l = |b2| n/|n|², with m = b1 × b2, n = b2 × b3,
    dφ/dx_j = −(1 + b1·b2/|b2|²) dφ/dx_i + (b3·b2/|b2|²) dφ/dx_l, and dφ/dx_k from
    translation invariance.
    """
    total = 0.0
    for r in range(atoms.shape[0]):
        i = atoms[r, 0]
        j = atoms[r, 1]
        k = atoms[r, 2]
        l = atoms[r, 3]  # noqa: E741
        delta = wrap_half_open_deg(dihedral_deg(xyz, i, j, k, l) - ideal[r], period[r])
        energy, slope = topout_energy(delta, weight[r], limit[r], flat[r])
        total += energy
        add_dihedral_gradient(xyz, i, j, k, l, slope, grad)
    return total


@njit(nogil=True, cache=True)
def topout_torsion_value_and_gradient_batch(
    xyz: np.ndarray,
    atoms: np.ndarray,
    ideal: np.ndarray,
    weight: np.ndarray,
    limit: np.ndarray,
    period: np.ndarray,
    flat: np.ndarray,
    grad: np.ndarray,
    values: np.ndarray,
) -> None:
    """Batched :func:`topout_torsion_value_and_gradient` for xyz (K, N, 3); adds into
    ``values`` (K,) and ``grad`` (K, N, 3)."""
    for k in range(xyz.shape[0]):
        values[k] += topout_torsion_value_and_gradient(xyz[k], atoms, ideal, weight, limit,
                                                       period, flat, grad[k])


@njit(nogil=True, cache=True)
def topout_torsion_deltas(
    xyz: np.ndarray, atoms: np.ndarray, ideal: np.ndarray, period: np.ndarray
) -> np.ndarray:
    """Residuals ``φ − ideal`` in degrees reduced to ``(−180/p, 180/p]``, shape (n,)."""
    phi = torsion_values(xyz, atoms)
    out = np.empty(atoms.shape[0])
    for r in range(atoms.shape[0]):
        out[r] = wrap_half_open_deg(phi[r] - ideal[r], period[r])
    return out
