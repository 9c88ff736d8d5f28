"""Torsion NCS restraints: pairwise top-out restraints between copies of one torsion, degrees.

A restraint r is one torsion present in n_r ≥ 2 NCS copies, with values φ_1..φ_n. Its
target is

    E_r = (1/n) Σ_{i<j} l² (1 − exp(−w d_ij² / l²)),    d_ij = wrap_p(φ_i − φ_j),

w = 1/σ², l = limit (degrees), p the periodicity (1, or 2 for torsions ending in one of two
equivalent atoms: ``wrap_p`` reduces to ``(−180/p, 180/p]``).

Why pairwise and 1/n: since Σ_{i<j} d_ij² = n Σ_i (φ_i − φ̄)², near agreement
E_r ≈ Σ_i (φ_i − φ̄)²/σ², which is restraining every copy to the group mean with sigma σ,
including the mean's dependence on every copy — but the gradient is exact and simple
(dE/dφ_i = (1/n) Σ_{j≠i} ∂E_ij/∂d_ij · ±1), it has no singularity where the circular mean
is undefined (copies spread around the circle), and the top-out acts on each pairwise
difference, so a copy that really differs (another rotamer: |d| ≫ σl) neither feels a
force nor pulls the agreeing copies towards it, as a circular mean would.

Layout (CSR): ``offsets`` (n+1,) int64; the copies of restraint r are rows
``offsets[r]:offsets[r+1]`` of ``atoms`` (M, 4) int64, each an ``(i, j, k, l)`` dihedral
about ``j-k`` (IUPAC sign, as :mod:`varref.engine.torsions`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from varref.engine.topout_torsions import topout_energy, wrap_half_open_deg

RAD_TO_DEG = 180.0 / math.pi

#: Below this, |m|², |n|² or |b2|² (Å⁴, Å⁴, Å²) mean three atoms are collinear: the dihedral
#: is undefined there and its gradient is set to zero (the value stays finite).
_DEGENERATE = 1e-24


@njit(nogil=True, cache=True)
def _dihedral_deg(xyz: np.ndarray, i: int, j: int, k: int, l: int) -> float:  # noqa: E741
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
def _add_dihedral_gradient(xyz: np.ndarray, i: int, j: int, k: int, l: int,  # noqa: E741
                           slope: float, grad: np.ndarray) -> None:
    """Add ``slope · dφ/dx`` (slope = dE/dφ per degree) for dihedral i-j-k-l to ``grad``.

    dφ/dx after Blondel & Karplus (1996), as :mod:`varref.engine.topout_torsions`; nothing is
    added when three atoms are collinear (the derivative is undefined there).
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
def _max_copies(offsets: np.ndarray) -> int:
    largest = 0
    for r in range(offsets.shape[0] - 1):
        largest = max(largest, offsets[r + 1] - offsets[r])
    return largest


@njit(nogil=True, cache=True)
def ncs_torsion_value_and_gradient(
    xyz: np.ndarray,
    atoms: np.ndarray,
    offsets: np.ndarray,
    period: np.ndarray,
    weight: np.ndarray,
    limit: np.ndarray,
    grad: np.ndarray,
) -> float:
    """Torsion NCS target ``T = Σ_r (1/n_r) Σ_{i<j} l_r² (1 − exp(−w_r d_ij² / l_r²))`` and
    its gradient.

    Parameters
    ----------
    xyz : (N, 3) float64
        Coordinates in Å.
    atoms : (M, 4) int64
        Dihedral atoms of every copy of every restraint.
    offsets : (n + 1,) int64
        Restraint r has the copies ``atoms[offsets[r]:offsets[r+1]]``; restraints with
        fewer than two copies contribute nothing.
    period : (n,) int64
        Periodicity p >= 1 of the differences.
    weight : (n,) float64
        1/σ², degrees⁻².
    limit : (n,) float64
        Top-out limit l > 0, degrees.
    grad : (N, 3) float64
        Gradient buffer; dT/dxyz is added to it.

    Returns
    -------
    float
        The target value T.

    Notes
    -----
    ``dT/dφ_i = (1/n) Σ_{j≠i} ±E'(d_ij)`` with ``E'(d) = 2 w d exp(−w d²/l²)`` (+ when i is
    the first of the pair); the wrap is piecewise the identity, so dd/dφ = ±1 except at
    d = ±180°/p, where E is continuous and its slope is negligible for l ≪ 180°.
    """
    phi = np.empty(_max_copies(offsets))
    slope = np.empty_like(phi)
    total = 0.0
    for r in range(offsets.shape[0] - 1):
        start = offsets[r]
        n = offsets[r + 1] - start
        if n < 2:
            continue
        for c in range(n):
            row = start + c
            phi[c] = _dihedral_deg(xyz, atoms[row, 0], atoms[row, 1], atoms[row, 2],
                                   atoms[row, 3])
            slope[c] = 0.0
        scale = 1.0 / n
        for a in range(n - 1):
            for b in range(a + 1, n):
                d = wrap_half_open_deg(phi[a] - phi[b], period[r])
                energy, de = topout_energy(d, weight[r], limit[r])
                total += scale * energy
                slope[a] += scale * de
                slope[b] -= scale * de
        for c in range(n):
            if slope[c] != 0.0:
                row = start + c
                _add_dihedral_gradient(xyz, atoms[row, 0], atoms[row, 1], atoms[row, 2],
                                       atoms[row, 3], slope[c], grad)
    return total


@njit(nogil=True, cache=True)
def ncs_torsion_value_and_gradient_batch(
    xyz: np.ndarray,
    atoms: np.ndarray,
    offsets: np.ndarray,
    period: np.ndarray,
    weight: np.ndarray,
    limit: np.ndarray,
    grad: np.ndarray,
    values: np.ndarray,
) -> None:
    """Batched :func:`ncs_torsion_value_and_gradient` for xyz (K, N, 3); adds into
    ``values`` (K,) and ``grad`` (K, N, 3)."""
    for k in range(xyz.shape[0]):
        values[k] += ncs_torsion_value_and_gradient(xyz[k], atoms, offsets, period, weight,
                                                    limit, grad[k])


@njit(nogil=True, cache=True)
def ncs_torsion_spread(xyz: np.ndarray, atoms: np.ndarray, offsets: np.ndarray,
                       period: np.ndarray) -> np.ndarray:
    """Largest |wrap_p(φ_i − φ_j)| over the copies of each restraint, degrees, shape (n,)
    (0 for a restraint with fewer than two copies)."""
    n_restraints = offsets.shape[0] - 1
    out = np.zeros(n_restraints)
    for r in range(n_restraints):
        start = offsets[r]
        stop = offsets[r + 1]
        for a in range(start, stop - 1):
            pa = _dihedral_deg(xyz, atoms[a, 0], atoms[a, 1], atoms[a, 2], atoms[a, 3])
            for b in range(a + 1, stop):
                pb = _dihedral_deg(xyz, atoms[b, 0], atoms[b, 1], atoms[b, 2], atoms[b, 3])
                out[r] = max(out[r], abs(wrap_half_open_deg(pa - pb, period[r])))
    return out
