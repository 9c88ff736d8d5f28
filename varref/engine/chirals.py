"""Chiral-volume restraints.

``atoms`` (n, 4) int64 ``(c, a, b, d)`` with the chiral centre first; signed volume
``V = (a - c) . ((b - c) x (d - c))`` (Å^3). Residual ``V - ideal``, or ``|V| - |ideal|``
when ``both_signs`` (either hand acceptable). ``weight`` = 1 / sigma^2 (Å^-6).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def chiral_value_and_gradient(
    xyz: np.ndarray,
    atoms: np.ndarray,
    ideal: np.ndarray,
    weight: np.ndarray,
    both_signs: np.ndarray,
    grad: np.ndarray,
) -> float:
    """Chiral target ``T = sum_r weight_r (V_r - ideal_r)^2`` and its gradient.

    Parameters
    ----------
    xyz : (N, 3) float64
    atoms : (n, 4) int64
        ``(centre, a, b, d)``.
    ideal, weight : (n,) float64
        Signed ideal volume (Å^3) and 1/sigma^2.
    both_signs : (n,) bool
        If True the residual is ``|V| - |ideal|``.
    grad : (N, 3) float64
        Gradient buffer; dT/dxyz is added to it.

    Returns
    -------
    float
        The target value T.

    Notes
    -----
    With u1 = a - c, u2 = b - c, u3 = d - c: dV/da = u2 x u3, dV/db = u3 x u1,
    dV/dd = u1 x u2 and dV/dc = -(sum of the three).
    """
    total = 0.0
    for r in range(atoms.shape[0]):
        c = atoms[r, 0]
        a = atoms[r, 1]
        b = atoms[r, 2]
        d = atoms[r, 3]
        u1x = xyz[a, 0] - xyz[c, 0]
        u1y = xyz[a, 1] - xyz[c, 1]
        u1z = xyz[a, 2] - xyz[c, 2]
        u2x = xyz[b, 0] - xyz[c, 0]
        u2y = xyz[b, 1] - xyz[c, 1]
        u2z = xyz[b, 2] - xyz[c, 2]
        u3x = xyz[d, 0] - xyz[c, 0]
        u3y = xyz[d, 1] - xyz[c, 1]
        u3z = xyz[d, 2] - xyz[c, 2]
        # u2 x u3 = dV/da
        gax = u2y * u3z - u2z * u3y
        gay = u2z * u3x - u2x * u3z
        gaz = u2x * u3y - u2y * u3x
        volume = u1x * gax + u1y * gay + u1z * gaz
        if both_signs[r]:
            sign = 1.0 if volume >= 0.0 else -1.0
            delta = abs(volume) - abs(ideal[r])
        else:
            sign = 1.0
            delta = volume - ideal[r]
        w = weight[r]
        total += w * delta * delta
        f = 2.0 * w * delta * sign
        gbx = u3y * u1z - u3z * u1y
        gby = u3z * u1x - u3x * u1z
        gbz = u3x * u1y - u3y * u1x
        gdx = u1y * u2z - u1z * u2y
        gdy = u1z * u2x - u1x * u2z
        gdz = u1x * u2y - u1y * u2x
        grad[a, 0] += f * gax
        grad[a, 1] += f * gay
        grad[a, 2] += f * gaz
        grad[b, 0] += f * gbx
        grad[b, 1] += f * gby
        grad[b, 2] += f * gbz
        grad[d, 0] += f * gdx
        grad[d, 1] += f * gdy
        grad[d, 2] += f * gdz
        grad[c, 0] -= f * (gax + gbx + gdx)
        grad[c, 1] -= f * (gay + gby + gdy)
        grad[c, 2] -= f * (gaz + gbz + gdz)
    return total


@njit(nogil=True, cache=True)
def chiral_volumes(xyz: np.ndarray, atoms: np.ndarray) -> np.ndarray:
    """Signed model chiral volumes (Å^3), shape (n,)."""
    out = np.empty(atoms.shape[0])
    for r in range(atoms.shape[0]):
        c = atoms[r, 0]
        a = atoms[r, 1]
        b = atoms[r, 2]
        d = atoms[r, 3]
        u1x = xyz[a, 0] - xyz[c, 0]
        u1y = xyz[a, 1] - xyz[c, 1]
        u1z = xyz[a, 2] - xyz[c, 2]
        u2x = xyz[b, 0] - xyz[c, 0]
        u2y = xyz[b, 1] - xyz[c, 1]
        u2z = xyz[b, 2] - xyz[c, 2]
        u3x = xyz[d, 0] - xyz[c, 0]
        u3y = xyz[d, 1] - xyz[c, 1]
        u3z = xyz[d, 2] - xyz[c, 2]
        out[r] = (u1x * (u2y * u3z - u2z * u3y) + u1y * (u2z * u3x - u2x * u3z)
                  + u1z * (u2x * u3y - u2y * u3x))
    return out


@njit(nogil=True, cache=True)
def chiral_deltas(
    xyz: np.ndarray, atoms: np.ndarray, ideal: np.ndarray, both_signs: np.ndarray
) -> np.ndarray:
    """Chiral residuals (Å^3): ``V - ideal`` or ``|V| - |ideal|`` when both_signs."""
    volume = chiral_volumes(xyz, atoms)
    out = np.empty(atoms.shape[0])
    for r in range(atoms.shape[0]):
        if both_signs[r]:
            out[r] = abs(volume[r]) - abs(ideal[r])
        else:
            out[r] = volume[r] - ideal[r]
    return out
