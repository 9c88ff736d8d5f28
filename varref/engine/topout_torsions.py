"""Torsion restraints with a top-out potential (reference-model restraints), degrees.

The potential (cctbx ``dihedral`` with ``top_out=True``, used by phenix reference-model
restraints; Headd et al. 2012) is, per restraint r with residual Δ (degrees),

    E(Δ) = l² (1 − exp(−w Δ² / l²)),        w = 1/σ², l = limit (degrees),

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

from varref.engine.torsions import torsion_values

RAD_TO_DEG = 180.0 / math.pi

#: Below this, |m|², |n|² or |b2|² (Å⁴, Å⁴, Å²) mean three atoms are collinear: the dihedral
#: is undefined there and its gradient is set to zero (the target value stays finite).
_DEGENERATE = 1e-24


@njit(nogil=True, cache=True)
def wrap_half_open_deg(delta: float, period: int) -> float:
    """``delta`` (degrees) reduced to ``(-180/period, 180/period]``."""
    span = 360.0 / period
    return delta - span * math.ceil(delta / span - 0.5)


@njit(nogil=True, cache=True)
def topout_energy(delta: float, weight: float, limit: float) -> tuple[float, float]:
    """``E = l² (1 − exp(−w Δ²/l²))`` and ``dE/dΔ`` for one residual Δ (degrees)."""
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
        b1x = xyz[j, 0] - xyz[i, 0]
        b1y = xyz[j, 1] - xyz[i, 1]
        b1z = xyz[j, 2] - xyz[i, 2]
        b2x = xyz[k, 0] - xyz[j, 0]
        b2y = xyz[k, 1] - xyz[j, 1]
        b2z = xyz[k, 2] - xyz[j, 2]
        b3x = xyz[l, 0] - xyz[k, 0]
        b3y = xyz[l, 1] - xyz[k, 1]
        b3z = xyz[l, 2] - xyz[k, 2]
        mx = b1y * b2z - b1z * b2y
        my = b1z * b2x - b1x * b2z
        mz = b1x * b2y - b1y * b2x
        nx = b2y * b3z - b2z * b3y
        ny = b2z * b3x - b2x * b3z
        nz = b2x * b3y - b2y * b3x
        b2sq = b2x * b2x + b2y * b2y + b2z * b2z
        b2len = math.sqrt(b2sq)
        y = b2len * (b1x * nx + b1y * ny + b1z * nz)
        x = mx * nx + my * ny + mz * nz
        phi = math.atan2(y, x) * RAD_TO_DEG  # atan2(0, 0) = 0: finite when degenerate
        delta = wrap_half_open_deg(phi - ideal[r], period[r])
        energy, slope = topout_energy(delta, weight[r], limit[r])
        total += energy
        m2 = mx * mx + my * my + mz * mz
        n2 = nx * nx + ny * ny + nz * nz
        if m2 <= _DEGENERATE or n2 <= _DEGENERATE or b2sq <= _DEGENERATE:
            continue
        f = slope * RAD_TO_DEG
        gi = -f * b2len / m2
        gl = f * b2len / n2
        gix = gi * mx
        giy = gi * my
        giz = gi * mz
        glx = gl * nx
        gly = gl * ny
        glz = gl * nz
        p = (b1x * b2x + b1y * b2y + b1z * b2z) / b2sq
        q = (b3x * b2x + b3y * b2y + b3z * b2z) / b2sq
        gjx = -(1.0 + p) * gix + q * glx
        gjy = -(1.0 + p) * giy + q * gly
        gjz = -(1.0 + p) * giz + q * glz
        grad[i, 0] += gix
        grad[i, 1] += giy
        grad[i, 2] += giz
        grad[l, 0] += glx
        grad[l, 1] += gly
        grad[l, 2] += glz
        grad[j, 0] += gjx
        grad[j, 1] += gjy
        grad[j, 2] += gjz
        grad[k, 0] -= gix + glx + gjx
        grad[k, 1] -= giy + gly + gjy
        grad[k, 2] -= giz + glz + gjz
    return total


@njit(nogil=True, cache=True)
def topout_torsion_value_and_gradient_batch(
    xyz: np.ndarray,
    atoms: np.ndarray,
    ideal: np.ndarray,
    weight: np.ndarray,
    limit: np.ndarray,
    period: np.ndarray,
    grad: np.ndarray,
    values: np.ndarray,
) -> None:
    """Batched :func:`topout_torsion_value_and_gradient` for xyz (K, N, 3); adds into
    ``values`` (K,) and ``grad`` (K, N, 3)."""
    for k in range(xyz.shape[0]):
        values[k] += topout_torsion_value_and_gradient(xyz[k], atoms, ideal, weight, limit,
                                                       period, grad[k])


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
