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
def _smallest_eigenvector_closed_form(sxx, sxy, sxz, syy, syz, szz):
    """Unit eigenvector of the smallest eigenvalue of a symmetric 3x3 matrix, or (0,0,0).

    Eigenvalue from the trigonometric solution of the characteristic cubic (Smith 1961),
    eigenvector as the longest cross product of two rows of ``M - lambda I``. Returns the
    zero vector when that is ill-conditioned (two smallest eigenvalues nearly equal, e.g.
    collinear atoms); the caller then falls back to Jacobi.
    """
    q = (sxx + syy + szz) / 3.0
    p1 = sxy * sxy + sxz * sxz + syz * syz
    axx = sxx - q
    ayy = syy - q
    azz = szz - q
    p2 = axx * axx + ayy * ayy + azz * azz + 2.0 * p1
    if p2 <= 0.0:
        return 0.0, 0.0, 0.0  # isotropic (all atoms coincide)
    p = math.sqrt(p2 / 6.0)
    # det((M - qI) / p) / 2, clamped against rounding
    det = (axx * (ayy * azz - syz * syz) - sxy * (sxy * azz - syz * sxz)
           + sxz * (sxy * syz - ayy * sxz))
    r = det / (2.0 * p * p * p)
    r = min(1.0, max(-1.0, r))
    phi = math.acos(r) / 3.0
    lam = q + 2.0 * p * math.cos(phi + 2.0 * math.pi / 3.0)
    # rows of M - lam I
    r0x, r0y, r0z = sxx - lam, sxy, sxz
    r1x, r1y, r1z = sxy, syy - lam, syz
    r2x, r2y, r2z = sxz, syz, szz - lam
    c0x = r0y * r1z - r0z * r1y
    c0y = r0z * r1x - r0x * r1z
    c0z = r0x * r1y - r0y * r1x
    c1x = r0y * r2z - r0z * r2y
    c1y = r0z * r2x - r0x * r2z
    c1z = r0x * r2y - r0y * r2x
    c2x = r1y * r2z - r1z * r2y
    c2y = r1z * r2x - r1x * r2z
    c2z = r1x * r2y - r1y * r2x
    n0 = c0x * c0x + c0y * c0y + c0z * c0z
    n1 = c1x * c1x + c1y * c1y + c1z * c1z
    n2 = c2x * c2x + c2y * c2y + c2z * c2z
    if n0 >= n1 and n0 >= n2:
        vx, vy, vz, norm2 = c0x, c0y, c0z, n0
    elif n1 >= n2:
        vx, vy, vz, norm2 = c1x, c1y, c1z, n1
    else:
        vx, vy, vz, norm2 = c2x, c2y, c2z, n2
    # |cross| ~ (gap between the two larger eigenvalue shifts); relative to the scale^2 of
    # the matrix a tiny value means the smallest eigenvalue is (nearly) degenerate
    scale = 6.0 * p * p
    if norm2 <= 1e-16 * scale * scale:
        return 0.0, 0.0, 0.0
    inv = 1.0 / math.sqrt(norm2)
    return vx * inv, vy * inv, vz * inv


@njit(nogil=True, cache=True)
def _plane_normal(xyz: np.ndarray, atoms: np.ndarray, start: int, stop: int,
                  a: np.ndarray, v: np.ndarray):
    """Centroid and unit normal of the least-squares plane through ``xyz[atoms[start:stop]]``.

    ``a`` and ``v`` are 3x3 scratch arrays for the Jacobi fallback.
    """
    n_members = stop - start
    cx = 0.0
    cy = 0.0
    cz = 0.0
    for t in range(start, stop):
        i = atoms[t]
        cx += xyz[i, 0]
        cy += xyz[i, 1]
        cz += xyz[i, 2]
    cx /= n_members
    cy /= n_members
    cz /= n_members
    sxx = sxy = sxz = syy = syz = szz = 0.0
    for t in range(start, stop):
        i = atoms[t]
        dx = xyz[i, 0] - cx
        dy = xyz[i, 1] - cy
        dz = xyz[i, 2] - cz
        sxx += dx * dx
        sxy += dx * dy
        sxz += dx * dz
        syy += dy * dy
        syz += dy * dz
        szz += dz * dz
    nx, ny, nz = _smallest_eigenvector_closed_form(sxx, sxy, sxz, syy, syz, szz)
    if nx == 0.0 and ny == 0.0 and nz == 0.0:
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
        nx /= norm
        ny /= norm
        nz /= norm
    return cx, cy, cz, nx, ny, nz


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
        start = offsets[p]
        stop = offsets[p + 1]
        if stop - start < 4:
            continue  # three points always lie on a plane
        cx, cy, cz, nx, ny, nz = _plane_normal(xyz, atoms, start, stop, a, v)
        w = weight[p]
        for t in range(start, stop):
            i = atoms[t]
            d = nx * (xyz[i, 0] - cx) + ny * (xyz[i, 1] - cy) + nz * (xyz[i, 2] - cz)
            total += w * d * d
            f = 2.0 * w * d
            grad[i, 0] += f * nx
            grad[i, 1] += f * ny
            grad[i, 2] += f * nz
    return total


@njit(nogil=True, cache=True)
def plane_deviations(xyz: np.ndarray, atoms: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Signed distance (Å) of every plane atom to its plane, aligned with ``atoms`` (m,)."""
    a = np.empty((3, 3))
    v = np.empty((3, 3))
    out = np.zeros(atoms.shape[0])
    for p in range(offsets.shape[0] - 1):
        start = offsets[p]
        stop = offsets[p + 1]
        if stop - start < 4:
            continue
        cx, cy, cz, nx, ny, nz = _plane_normal(xyz, atoms, start, stop, a, v)
        for t in range(start, stop):
            i = atoms[t]
            out[t] = (nx * (xyz[i, 0] - cx) + ny * (xyz[i, 1] - cy)
                              + nz * (xyz[i, 2] - cz))
    return out
