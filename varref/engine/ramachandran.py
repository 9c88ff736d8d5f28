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

RAD_TO_DEG = 180.0 / math.pi
#: Below this |m|^2, |n|^2 or |b2|^2 (Å^4, Å^2) the dihedral is treated as undefined.
_DEGENERATE = 1e-24


@njit(nogil=True, cache=True)
def dihedral_with_gradient(xyz: np.ndarray, i: int, j: int, k: int, l: int,  # noqa: E741
                           out: np.ndarray) -> tuple[float, bool]:
    """Dihedral i-j-k-l in radians, (-pi, pi], and its gradient on the four atoms.

    Parameters
    ----------
    xyz : (N, 3) float64
    i, j, k, l : int
        Atom indices.
    out : (4, 3) float64
        Receives d(phi)/d(x_i), ..., d(phi)/d(x_l) (radians per Å); zero when undefined.

    Returns
    -------
    phi : float
    defined : bool
        False when three of the atoms are collinear (then ``out`` is zero).
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
    b2len = math.sqrt(b2sq)
    phi = math.atan2(b2len * (b1x * nx + b1y * ny + b1z * nz), mx * nx + my * ny + mz * nz)
    m2 = mx * mx + my * my + mz * mz
    n2 = nx * nx + ny * ny + nz * nz
    for a in range(4):
        for d in range(3):
            out[a, d] = 0.0
    if m2 <= _DEGENERATE or n2 <= _DEGENERATE or b2sq <= _DEGENERATE:
        return phi, False
    gi = -b2len / m2
    gl = b2len / n2
    out[0, 0] = gi * mx
    out[0, 1] = gi * my
    out[0, 2] = gi * mz
    out[3, 0] = gl * nx
    out[3, 1] = gl * ny
    out[3, 2] = gl * nz
    p = (b1x * b2x + b1y * b2y + b1z * b2z) / b2sq
    q = (b3x * b2x + b3y * b2y + b3z * b2z) / b2sq
    for d in range(3):
        out[1, d] = -(1.0 + p) * out[0, d] + q * out[3, d]
        out[2, d] = -(out[0, d] + out[1, d] + out[3, d])
    return phi, True


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
    g_phi = np.empty((4, 3))
    g_psi = np.empty((4, 3))
    for r in range(atoms.shape[0]):
        phi, _ = dihedral_with_gradient(xyz, atoms[r, 0], atoms[r, 1], atoms[r, 2], atoms[r, 3], g_phi)
        psi, _ = dihedral_with_gradient(xyz, atoms[r, 1], atoms[r, 2], atoms[r, 3], atoms[r, 4], g_psi)
        phi *= RAD_TO_DEG
        psi *= RAD_TO_DEG
        value, dv_dphi, dv_dpsi = potential_at(table, origin, spacing, classes[r], phi, psi)
        w = weight[r]
        total += w * value
        if dv_dphi == 0.0 and dv_dpsi == 0.0:
            continue
        # undefined dihedrals left their gradient rows zero
        f_phi = w * dv_dphi * RAD_TO_DEG
        f_psi = w * dv_dpsi * RAD_TO_DEG
        for a in range(4):
            for d in range(3):
                grad[atoms[r, a], d] += f_phi * g_phi[a, d]
                grad[atoms[r, a + 1], d] += f_psi * g_psi[a, d]
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
    scratch = np.empty((4, 3))
    for r in range(atoms.shape[0]):
        phi, _ = dihedral_with_gradient(xyz, atoms[r, 0], atoms[r, 1], atoms[r, 2], atoms[r, 3], scratch)
        psi, _ = dihedral_with_gradient(xyz, atoms[r, 1], atoms[r, 2], atoms[r, 3], atoms[r, 4], scratch)
        out[r, 0] = phi * RAD_TO_DEG
        out[r, 1] = psi * RAD_TO_DEG
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
