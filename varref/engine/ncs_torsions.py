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


import numpy as np
from numba import njit

from varref.engine.topout_torsions import topout_energy, wrap_half_open_deg
from varref.engine.torsions import add_dihedral_gradient, dihedral_deg




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
            phi[c] = dihedral_deg(xyz, atoms[row, 0], atoms[row, 1], atoms[row, 2],
                                   atoms[row, 3])
            slope[c] = 0.0
        scale = 1.0 / n
        for a in range(n - 1):
            for b in range(a + 1, n):
                d = wrap_half_open_deg(phi[a] - phi[b], period[r])
                energy, de = topout_energy(d, weight[r], limit[r], 0.0)
                total += scale * energy
                slope[a] += scale * de
                slope[b] -= scale * de
        for c in range(n):
            if slope[c] != 0.0:
                row = start + c
                add_dihedral_gradient(xyz, atoms[row, 0], atoms[row, 1], atoms[row, 2],
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
            pa = dihedral_deg(xyz, atoms[a, 0], atoms[a, 1], atoms[a, 2], atoms[a, 3])
            for b in range(a + 1, stop):
                pb = dihedral_deg(xyz, atoms[b, 0], atoms[b, 1], atoms[b, 2], atoms[b, 3])
                out[r] = max(out[r], abs(wrap_half_open_deg(pa - pb, period[r])))
    return out
