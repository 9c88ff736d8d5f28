"""Bond-angle restraints: value and gradient of ``sum w (theta - ideal)^2`` in degrees.

``atoms`` (n, 3) int64 with the vertex in the middle column, ``ideal`` (n,) degrees,
``weight`` (n,) = 1 / sigma^2 with sigma in degrees. The residual is taken in degrees so
that it matches the library sigmas; the gradient therefore carries the factor 180/pi.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

RAD_TO_DEG = 180.0 / math.pi


@njit(nogil=True, cache=True)
def angle_value_and_gradient(
    xyz: np.ndarray, atoms: np.ndarray, ideal: np.ndarray, weight: np.ndarray, grad: np.ndarray
) -> float:
    """Angle target ``T = sum_r weight_r (theta_r - ideal_r)^2`` (degrees) and its gradient.

    Parameters
    ----------
    xyz : (N, 3) float64
        Coordinates in Å.
    atoms : (n, 3) int64
        ``(i, j, k)`` with the angle at ``j``.
    ideal, weight : (n,) float64
        Ideal angle (degrees) and 1/sigma^2 (degrees^-2).
    grad : (N, 3) float64
        Gradient buffer (Å^-1); dT/dxyz is added to it.

    Returns
    -------
    float
        The target value T.
    """
    total = 0.0
    for r in range(atoms.shape[0]):
        i = atoms[r, 0]
        j = atoms[r, 1]
        k = atoms[r, 2]
        ax = xyz[i, 0] - xyz[j, 0]
        ay = xyz[i, 1] - xyz[j, 1]
        az = xyz[i, 2] - xyz[j, 2]
        bx = xyz[k, 0] - xyz[j, 0]
        by = xyz[k, 1] - xyz[j, 1]
        bz = xyz[k, 2] - xyz[j, 2]
        cx = ay * bz - az * by
        cy = az * bx - ax * bz
        cz = ax * by - ay * bx
        s = math.sqrt(cx * cx + cy * cy + cz * cz)  # |a||b| sin(theta)
        c = ax * bx + ay * by + az * bz  # |a||b| cos(theta)
        # atan2 stays accurate near 0 and 180 degrees, where acos loses digits.
        theta = math.atan2(s, c) * RAD_TO_DEG
        delta = theta - ideal[r]
        w = weight[r]
        total += w * delta * delta
        a2 = ax * ax + ay * ay + az * az
        b2 = bx * bx + by * by + bz * bz
        if s <= 1e-12 * math.sqrt(a2 * b2):
            continue  # collinear: the bending direction is undefined
        # d(theta)/da = (c a/|a|^2 - b) / s ; d(theta)/db = (c b/|b|^2 - a) / s
        f = 2.0 * w * delta * RAD_TO_DEG / s
        ca = c / a2
        cb = c / b2
        gix = f * (ca * ax - bx)
        giy = f * (ca * ay - by)
        giz = f * (ca * az - bz)
        gkx = f * (cb * bx - ax)
        gky = f * (cb * by - ay)
        gkz = f * (cb * bz - az)
        grad[i, 0] += gix
        grad[i, 1] += giy
        grad[i, 2] += giz
        grad[k, 0] += gkx
        grad[k, 1] += gky
        grad[k, 2] += gkz
        grad[j, 0] -= gix + gkx
        grad[j, 1] -= giy + gky
        grad[j, 2] -= giz + gkz
    return total


@njit(nogil=True, cache=True)
def angle_values(xyz: np.ndarray, atoms: np.ndarray) -> np.ndarray:
    """Model bond angles in degrees, shape (n,)."""
    out = np.empty(atoms.shape[0])
    for r in range(atoms.shape[0]):
        i = atoms[r, 0]
        j = atoms[r, 1]
        k = atoms[r, 2]
        ax = xyz[i, 0] - xyz[j, 0]
        ay = xyz[i, 1] - xyz[j, 1]
        az = xyz[i, 2] - xyz[j, 2]
        bx = xyz[k, 0] - xyz[j, 0]
        by = xyz[k, 1] - xyz[j, 1]
        bz = xyz[k, 2] - xyz[j, 2]
        cx = ay * bz - az * by
        cy = az * bx - ax * bz
        cz = ax * by - ay * bx
        s = math.sqrt(cx * cx + cy * cy + cz * cz)
        c = ax * bx + ay * by + az * bz
        out[r] = math.atan2(s, c) * RAD_TO_DEG
    return out
