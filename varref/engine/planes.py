"""Planarity restraints: distances of each plane atom to the least-squares plane.

Planes are stored CSR-style: plane p holds ``atoms[offsets[p]:offsets[p+1]]``, all with
the weight ``weight[p]`` = 1 / sigma_p^2. For each plane the target is
``T_p = w_p * sum_i d_i^2`` where ``d_i = n . (x_i - centroid)`` and ``n`` is the unit
normal of the least-squares plane, i.e. the eigenvector of the smallest eigenvalue of the
3x3 scatter matrix ``M = sum_i (x_i - c)(x_i - c)^T``; ``sum_i d_i^2`` equals that
eigenvalue. Its gradient is ``dT_p/dx_i = 2 w_p d_i n``: n is stationary for the
Rayleigh quotient (Hellmann-Feynman) and the centroid terms cancel because sum_i d_i = 0.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def _smallest_eigenvector_3x3(a: np.ndarray, v: np.ndarray) -> int:
    """Cyclic Jacobi diagonalisation of the symmetric 3x3 ``a`` (overwritten).

    On return ``a`` is (numerically) diagonal and ``v`` holds the eigenvectors in its
    columns; returns the column index of the smallest eigenvalue. Jacobi is used rather
    than a closed-form cubic because it stays accurate when two eigenvalues are close.
    """
    for p in range(3):
        for q in range(3):
            v[p, q] = 1.0 if p == q else 0.0
    for _sweep in range(50):
        off = a[0, 1] * a[0, 1] + a[0, 2] * a[0, 2] + a[1, 2] * a[1, 2]
        scale = a[0, 0] * a[0, 0] + a[1, 1] * a[1, 1] + a[2, 2] * a[2, 2]
        if off <= 1e-36 * scale or off == 0.0:
            break
        for pq in range(3):
            if pq == 0:
                p, q = 0, 1
            elif pq == 1:
                p, q = 0, 2
            else:
                p, q = 1, 2
            apq = a[p, q]
            if apq == 0.0:
                continue
            theta = (a[q, q] - a[p, p]) / (2.0 * apq)
            t = 1.0 / (abs(theta) + math.sqrt(theta * theta + 1.0))
            if theta < 0.0:
                t = -t
            c = 1.0 / math.sqrt(t * t + 1.0)
            s = t * c
            # A' = J^T A J with the rotation J in the (p, q) plane
            for m in range(3):
                amp = a[m, p]
                amq = a[m, q]
                a[m, p] = c * amp - s * amq
                a[m, q] = s * amp + c * amq
            for m in range(3):
                apm = a[p, m]
                aqm = a[q, m]
                a[p, m] = c * apm - s * aqm
                a[q, m] = s * apm + c * aqm
            a[p, q] = 0.0
            a[q, p] = 0.0
            for m in range(3):
                vmp = v[m, p]
                vmq = v[m, q]
                v[m, p] = c * vmp - s * vmq
                v[m, q] = s * vmp + c * vmq
    smallest = 0
    if a[1, 1] < a[smallest, smallest]:
        smallest = 1
    if a[2, 2] < a[smallest, smallest]:
        smallest = 2
    return smallest


@njit(nogil=True, cache=True)
def _plane_normal(xyz: np.ndarray, members: np.ndarray, a: np.ndarray, v: np.ndarray):
    """Centroid and unit normal of the least-squares plane through ``xyz[members]``."""
    n_members = members.shape[0]
    cx = 0.0
    cy = 0.0
    cz = 0.0
    for t in range(n_members):
        i = members[t]
        cx += xyz[i, 0]
        cy += xyz[i, 1]
        cz += xyz[i, 2]
    cx /= n_members
    cy /= n_members
    cz /= n_members
    sxx = sxy = sxz = syy = syz = szz = 0.0
    for t in range(n_members):
        i = members[t]
        dx = xyz[i, 0] - cx
        dy = xyz[i, 1] - cy
        dz = xyz[i, 2] - cz
        sxx += dx * dx
        sxy += dx * dy
        sxz += dx * dz
        syy += dy * dy
        syz += dy * dz
        szz += dz * dz
    a[0, 0] = sxx
    a[0, 1] = sxy
    a[0, 2] = sxz
    a[1, 0] = sxy
    a[1, 1] = syy
    a[1, 2] = syz
    a[2, 0] = sxz
    a[2, 1] = syz
    a[2, 2] = szz
    col = _smallest_eigenvector_3x3(a, v)
    nx = v[0, col]
    ny = v[1, col]
    nz = v[2, col]
    norm = math.sqrt(nx * nx + ny * ny + nz * nz)
    return cx, cy, cz, nx / norm, ny / norm, nz / norm


@njit(nogil=True, cache=True)
def plane_value_and_gradient(
    xyz: np.ndarray, atoms: np.ndarray, offsets: np.ndarray, weight: np.ndarray, grad: np.ndarray
) -> float:
    """Planarity target ``T = sum_p w_p sum_{i in p} d_i^2`` and its gradient.

    Parameters
    ----------
    xyz : (N, 3) float64
    atoms : (m,) int64
        Concatenated plane atom lists.
    offsets : (n_planes + 1,) int64
        Plane p is ``atoms[offsets[p]:offsets[p+1]]``.
    weight : (n_planes,) float64
        1/sigma_p^2 (Å^-2), applied to every atom of the plane.
    grad : (N, 3) float64
        Gradient buffer; dT/dxyz is added to it.

    Returns
    -------
    float
        The target value T.
    """
    a = np.empty((3, 3))
    v = np.empty((3, 3))
    total = 0.0
    for p in range(offsets.shape[0] - 1):
        members = atoms[offsets[p]:offsets[p + 1]]
        if members.shape[0] < 4:
            continue  # three points always lie on a plane
        cx, cy, cz, nx, ny, nz = _plane_normal(xyz, members, a, v)
        w = weight[p]
        for t in range(members.shape[0]):
            i = members[t]
            d = nx * (xyz[i, 0] - cx) + ny * (xyz[i, 1] - cy) + nz * (xyz[i, 2] - cz)
            total += w * d * d
            f = 2.0 * w * d
            grad[i, 0] += f * nx
            grad[i, 1] += f * ny
            grad[i, 2] += f * nz
    return total


@njit(nogil=True, cache=True)
def plane_value_and_gradient_batch(
    xyz: np.ndarray,
    atoms: np.ndarray,
    offsets: np.ndarray,
    weight: np.ndarray,
    grad: np.ndarray,
    values: np.ndarray,
) -> None:
    """Batched :func:`plane_value_and_gradient` for xyz (K, N, 3); adds into values, grad."""
    for k in range(xyz.shape[0]):
        values[k] += plane_value_and_gradient(xyz[k], atoms, offsets, weight, grad[k])


@njit(nogil=True, cache=True)
def plane_deviations(xyz: np.ndarray, atoms: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Signed distance (Å) of every plane atom to its plane, aligned with ``atoms`` (m,)."""
    a = np.empty((3, 3))
    v = np.empty((3, 3))
    out = np.zeros(atoms.shape[0])
    for p in range(offsets.shape[0] - 1):
        start = offsets[p]
        members = atoms[start:offsets[p + 1]]
        if members.shape[0] < 4:
            continue
        cx, cy, cz, nx, ny, nz = _plane_normal(xyz, members, a, v)
        for t in range(members.shape[0]):
            i = members[t]
            out[start + t] = (nx * (xyz[i, 0] - cx) + ny * (xyz[i, 1] - cy)
                              + nz * (xyz[i, 2] - cz))
    return out
