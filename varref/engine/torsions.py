"""Torsion (dihedral) restraints with periodicity, residuals in degrees.

``atoms`` (n, 4) int64 ``(i, j, k, l)``: dihedral about the ``j-k`` bond, IUPAC sign
(positive = clockwise looking from ``j`` to ``k``; 0 = cis, 180 = trans). ``period`` n
means the restraint is satisfied at ``ideal + m * 360/n`` for any integer m; the residual is
the signed difference to the nearest such value, in ``[-180/n, 180/n)``. ``period <= 0`` is
treated as 1 (done once when packing, see :func:`varref.engine.restraint_target.pack_restraints`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

RAD_TO_DEG = 180.0 / math.pi


@njit(nogil=True, cache=True)
def wrap_periodic_deg(delta: float, period: int) -> float:
    """Signed difference ``delta`` (degrees) reduced to ``[-180/period, 180/period)``."""
    span = 360.0 / period
    return delta - span * math.floor(delta / span + 0.5)


#: Below this, |m|², |n|² or |b2|² (Å⁴, Å⁴, Å²) mean three atoms are collinear: the dihedral
#: is undefined there and its gradient is set to zero (the value stays finite).
_DEGENERATE = 1e-24


@njit(nogil=True, cache=True)
def dihedral_deg(xyz: np.ndarray, i: int, j: int, k: int, l: int) -> float:  # noqa: E741
    """Dihedral (degrees, (−180, 180]) of atoms i-j-k-l; 0 when undefined (atan2(0, 0))."""
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
    b2len = math.sqrt(b2x * b2x + b2y * b2y + b2z * b2z)
    y = b2len * (b1x * nx + b1y * ny + b1z * nz)
    x = mx * nx + my * ny + mz * nz
    return math.atan2(y, x) * RAD_TO_DEG


@njit(nogil=True, cache=True)
def add_dihedral_gradient(xyz: np.ndarray, i: int, j: int, k: int, l: int,  # noqa: E741
                           slope: float, grad: np.ndarray) -> None:
    """Add ``slope · dφ/dx`` (slope = dE/dφ per degree) for dihedral i-j-k-l to ``grad``.

    dφ/dx after Blondel & Karplus (1996) (see :func:`torsion_value_and_gradient`); nothing
    is added when three atoms are collinear (the derivative is undefined there). Shared by
    every dihedral term (torsions, top-out torsions, NCS, Ramachandran).
    """
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
    m2 = mx * mx + my * my + mz * mz
    n2 = nx * nx + ny * ny + nz * nz
    if m2 <= _DEGENERATE or n2 <= _DEGENERATE or b2sq <= _DEGENERATE:
        return
    b2len = math.sqrt(b2sq)
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


@njit(nogil=True, cache=True)
def torsion_value_and_gradient(
    xyz: np.ndarray,
    atoms: np.ndarray,
    ideal: np.ndarray,
    weight: np.ndarray,
    period: np.ndarray,
    grad: np.ndarray,
) -> float:
    """Torsion target ``T = sum_r weight_r wrap(phi_r - ideal_r)^2`` (degrees) and gradient.

    Parameters
    ----------
    xyz : (N, 3) float64
        Coordinates in Å.
    atoms : (n, 4) int64
        Dihedral atoms.
    ideal, weight : (n,) float64
        Ideal torsion (degrees) and 1/sigma^2 (degrees^-2).
    period : (n,) int64
        Periodicity n >= 1.
    grad : (N, 3) float64
        Gradient buffer; dT/dxyz is added to it.

    Returns
    -------
    float
        The target value T.

    Notes
    -----
    phi = atan2(|b2| b1.(b2 x b3), (b1 x b2).(b2 x b3)) with b1 = x_j - x_i,
    b2 = x_k - x_j, b3 = x_l - x_k; gradient after Blondel & Karplus (1996):
    dphi/dx_i = -|b2| m/|m|^2, dphi/dx_l = |b2| n/|n|^2 with m = b1 x b2, n = b2 x b3,
    dphi/dx_j = -(1 + b1.b2/|b2|^2) dphi/dx_i + (b3.b2/|b2|^2) dphi/dx_l and
    dphi/dx_k from translation invariance.
    """
    total = 0.0
    for r in range(atoms.shape[0]):
        i = atoms[r, 0]
        j = atoms[r, 1]
        k = atoms[r, 2]
        l = atoms[r, 3]  # noqa: E741
        delta = wrap_periodic_deg(dihedral_deg(xyz, i, j, k, l) - ideal[r], period[r])
        w = weight[r]
        total += w * delta * delta
        add_dihedral_gradient(xyz, i, j, k, l, 2.0 * w * delta, grad)
    return total


@njit(nogil=True, cache=True)
def torsion_value_and_gradient_batch(
    xyz: np.ndarray,
    atoms: np.ndarray,
    ideal: np.ndarray,
    weight: np.ndarray,
    period: np.ndarray,
    grad: np.ndarray,
    values: np.ndarray,
) -> None:
    """Batched :func:`torsion_value_and_gradient` for xyz (K, N, 3): adds into ``values``
    (K,) and ``grad`` (K, N, 3) in one call (no Python loop over the K problems)."""
    for k in range(xyz.shape[0]):
        values[k] += torsion_value_and_gradient(xyz[k], atoms, ideal, weight, period, grad[k])


@njit(nogil=True, cache=True)
def torsion_values(xyz: np.ndarray, atoms: np.ndarray) -> np.ndarray:
    """Model dihedral angles in degrees, in (-180, 180], shape (n,)."""
    out = np.empty(atoms.shape[0])
    for r in range(atoms.shape[0]):
        out[r] = dihedral_deg(xyz, atoms[r, 0], atoms[r, 1], atoms[r, 2], atoms[r, 3])
    return out


@njit(nogil=True, cache=True)
def torsion_deltas(
    xyz: np.ndarray, atoms: np.ndarray, ideal: np.ndarray, period: np.ndarray
) -> np.ndarray:
    """Periodic residuals ``wrap(phi - ideal)`` in degrees, shape (n,)."""
    phi = torsion_values(xyz, atoms)
    out = np.empty(atoms.shape[0])
    for r in range(atoms.shape[0]):
        out[r] = wrap_periodic_deg(phi[r] - ideal[r], period[r])
    return out
