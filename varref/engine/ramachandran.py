"""Ramachandran restraint: a tabulated potential V_c(phi, psi) per residue, with gradient.

A restrained residue r has five atoms ``atoms[r] = (C_prev, N, CA, C, N_next)``, so
phi = C_prev-N-CA-C and psi = N-CA-C-N_next (IUPAC sign, degrees), and a class index
``classes[r]`` into the first axis of ``table`` (n_classes, n, n). The target is

    T = sum_r weight_r V_{c_r}(phi_r, psi_r).

The table holds V at the nodes ``origin + k * spacing`` (k = 0..n-1, degrees) of both axes,
periodic with ``n * spacing = 360``. Between nodes V is the bicubic Hermite interpolant
(C1 everywhere) whose node derivatives are central differences, **except at nodes where
V = 0**, whose derivatives are set to zero: V >= 0 has a minimum there, and this makes V
vanish identically in every cell whose four corners are zero, so a flat region of the table
stays exactly flat between its nodes.

The gradient is the chain rule through the dihedral gradient of Blondel & Karplus (1996),
written out as in :mod:`varref.engine.torsions`. A dihedral with three collinear atoms is
undefined: it keeps its value (atan2 of zeros) and contributes no gradient, so degenerate
geometry never yields NaN.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from varref.engine.torsions import add_dihedral_gradient, dihedral_deg



@njit(nogil=True, cache=True)
def _node(table: np.ndarray, c: int, i: int, j: int) -> tuple[float, float, float, float]:
    """Value and node-unit derivatives (d/di, d/dj, d2/didj) of table[c] at node (i, j)."""
    n_i = table.shape[1]
    n_j = table.shape[2]
    i0 = i % n_i
    j0 = j % n_j
    f = table[c, i0, j0]
    if f == 0.0:
        return 0.0, 0.0, 0.0, 0.0  # minimum of V >= 0: zero slope keeps flat cells flat
    ip = (i0 + 1) % n_i
    im = (i0 - 1) % n_i
    jp = (j0 + 1) % n_j
    jm = (j0 - 1) % n_j
    fi = 0.5 * (table[c, ip, j0] - table[c, im, j0])
    fj = 0.5 * (table[c, i0, jp] - table[c, i0, jm])
    fij = 0.25 * (table[c, ip, jp] - table[c, ip, jm] - table[c, im, jp] + table[c, im, jm])
    return f, fi, fj, fij


@njit(nogil=True, cache=True)
def potential_at(table: np.ndarray, origin: float, spacing: float, c: int,
                 phi: float, psi: float) -> tuple[float, float, float]:
    """V_c(phi, psi) and its derivatives d/dphi, d/dpsi (per degree), by bicubic Hermite
    interpolation of ``table[c]`` (see the module docstring).

    Parameters
    ----------
    table : (n_classes, n, n) float64
    origin, spacing : float
        Angle of node 0 and node spacing, degrees; ``n * spacing`` must be 360.
    c : int
        Class index.
    phi, psi : float
        Degrees, any range (periodic); NaN gives NaN and zero derivatives.
    """
    if not (math.isfinite(phi) and math.isfinite(psi)):
        return math.nan, 0.0, 0.0
    u = (phi - origin) / spacing
    v = (psi - origin) / spacing
    iu = math.floor(u)
    iv = math.floor(v)
    t = u - iu
    s = v - iv
    i = int(iu)
    j = int(iv)
    # Hermite basis: h0 value at 0, h1 value at 1, g0 slope at 0, g1 slope at 1; d: d/dt
    t2 = t * t
    t3 = t2 * t
    s2 = s * s
    s3 = s2 * s
    ht = (2 * t3 - 3 * t2 + 1, -2 * t3 + 3 * t2, t3 - 2 * t2 + t, t3 - t2)
    hs = (2 * s3 - 3 * s2 + 1, -2 * s3 + 3 * s2, s3 - 2 * s2 + s, s3 - s2)
    dt = (6 * t2 - 6 * t, -6 * t2 + 6 * t, 3 * t2 - 4 * t + 1, 3 * t2 - 2 * t)
    ds = (6 * s2 - 6 * s, -6 * s2 + 6 * s, 3 * s2 - 4 * s + 1, 3 * s2 - 2 * s)
    value = 0.0
    d_u = 0.0
    d_v = 0.0
    for a in range(2):
        for b in range(2):
            f, fi, fj, fij = _node(table, c, i + a, j + b)
            value += (f * ht[a] * hs[b] + fi * ht[2 + a] * hs[b]
                      + fj * ht[a] * hs[2 + b] + fij * ht[2 + a] * hs[2 + b])
            d_u += (f * dt[a] * hs[b] + fi * dt[2 + a] * hs[b]
                    + fj * dt[a] * hs[2 + b] + fij * dt[2 + a] * hs[2 + b])
            d_v += (f * ht[a] * ds[b] + fi * ht[2 + a] * ds[b]
                    + fj * ht[a] * ds[2 + b] + fij * ht[2 + a] * ds[2 + b])
    return value, d_u / spacing, d_v / spacing


@njit(nogil=True, cache=True)
def ramachandran_value_and_gradient(
    xyz: np.ndarray,
    atoms: np.ndarray,
    classes: np.ndarray,
    weight: np.ndarray,
    table: np.ndarray,
    origin: float,
    spacing: float,
    grad: np.ndarray,
) -> float:
    """``T = sum_r weight_r V_{classes_r}(phi_r, psi_r)`` and its gradient.

    Parameters
    ----------
    xyz : (N, 3) float64
        Coordinates in Å.
    atoms : (n, 5) int64
        ``(C_prev, N, CA, C, N_next)`` per residue.
    classes : (n,) int64
        Row of ``table`` per residue.
    weight : (n,) float64
    table : (n_classes, m, m) float64
        Potential at the nodes (see :func:`potential_at`).
    origin, spacing : float
        Node grid, degrees.
    grad : (N, 3) float64
        dT/dxyz is added to it.

    Returns
    -------
    float
        T (NaN when a coordinate is NaN).
    """
    total = 0.0
    for r in range(atoms.shape[0]):
        c_prev, n, ca, c, n_next = atoms[r, 0], atoms[r, 1], atoms[r, 2], atoms[r, 3], atoms[r, 4]
        phi = dihedral_deg(xyz, c_prev, n, ca, c)
        psi = dihedral_deg(xyz, n, ca, c, n_next)
        value, dv_dphi, dv_dpsi = potential_at(table, origin, spacing, classes[r], phi, psi)
        w = weight[r]
        total += w * value
        if dv_dphi == 0.0 and dv_dpsi == 0.0:
            continue
        # undefined dihedrals (collinear atoms) add no gradient
        add_dihedral_gradient(xyz, c_prev, n, ca, c, w * dv_dphi, grad)
        add_dihedral_gradient(xyz, n, ca, c, n_next, w * dv_dpsi, grad)
    return total


@njit(nogil=True, cache=True)
def ramachandran_values_and_gradients_batch(
    xyz: np.ndarray,
    atoms: np.ndarray,
    classes: np.ndarray,
    weight: np.ndarray,
    table: np.ndarray,
    origin: float,
    spacing: float,
    grad: np.ndarray,
    values: np.ndarray,
) -> None:
    """Batched :func:`ramachandran_value_and_gradient` for xyz (K, N, 3); adds into
    ``values`` (K,) and ``grad`` (K, N, 3)."""
    for k in range(xyz.shape[0]):
        values[k] += ramachandran_value_and_gradient(xyz[k], atoms, classes, weight, table,
                                                     origin, spacing, grad[k])


@njit(nogil=True, cache=True)
def phi_psi(xyz: np.ndarray, atoms: np.ndarray) -> np.ndarray:
    """(n, 2) phi and psi in degrees, (-180, 180], for residues ``atoms`` (n, 5)."""
    out = np.empty((atoms.shape[0], 2))
    for r in range(atoms.shape[0]):
        out[r, 0] = dihedral_deg(xyz, atoms[r, 0], atoms[r, 1], atoms[r, 2], atoms[r, 3])
        out[r, 1] = dihedral_deg(xyz, atoms[r, 1], atoms[r, 2], atoms[r, 3], atoms[r, 4])
    return out


@njit(nogil=True, cache=True)
def residue_potentials(xyz: np.ndarray, atoms: np.ndarray, classes: np.ndarray,
                       table: np.ndarray, origin: float, spacing: float) -> np.ndarray:
    """Unweighted V per residue, (n,) (for reports and tests)."""
    angles = phi_psi(xyz, atoms)
    out = np.empty(atoms.shape[0])
    for r in range(atoms.shape[0]):
        out[r] = potential_at(table, origin, spacing, classes[r], angles[r, 0], angles[r, 1])[0]
    return out
