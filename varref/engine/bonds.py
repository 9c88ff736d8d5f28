"""Bond-length restraints: value and gradient of ``sum w (|x_j - x_i| - ideal)^2``.

All kernels are pure functions over flat arrays (see :mod:`varref.restraints.arrays`):
``atoms`` (n, 2) int64, ``ideal`` (n,) Å, ``weight`` (n,) = 1 / sigma^2. Gradients are
*accumulated* into the array passed in, so several terms can share one gradient buffer.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def bond_value_and_gradient(
    xyz: np.ndarray, atoms: np.ndarray, ideal: np.ndarray, weight: np.ndarray, grad: np.ndarray
) -> float:
    """Bond target ``T = sum_r weight_r (d_r - ideal_r)^2`` and its gradient.

    Parameters
    ----------
    xyz : (N, 3) float64
        Coordinates in Å.
    atoms : (n, 2) int64
        Bonded atom pairs.
    ideal, weight : (n,) float64
        Ideal length (Å) and weight 1/sigma^2 (Å^-2).
    grad : (N, 3) float64
        Gradient buffer; dT/dxyz is added to it.

    Returns
    -------
    float
        The target value T (dimensionless).
    """
    total = 0.0
    for r in range(atoms.shape[0]):
        i = atoms[r, 0]
        j = atoms[r, 1]
        dx = xyz[j, 0] - xyz[i, 0]
        dy = xyz[j, 1] - xyz[i, 1]
        dz = xyz[j, 2] - xyz[i, 2]
        d = math.sqrt(dx * dx + dy * dy + dz * dz)
        delta = d - ideal[r]
        w = weight[r]
        total += w * delta * delta
        if d > 0.0:  # coincident atoms: direction undefined, leave the gradient alone
            f = 2.0 * w * delta / d
            grad[j, 0] += f * dx
            grad[j, 1] += f * dy
            grad[j, 2] += f * dz
            grad[i, 0] -= f * dx
            grad[i, 1] -= f * dy
            grad[i, 2] -= f * dz
    return total


@njit(nogil=True, cache=True)
def bond_lengths(xyz: np.ndarray, atoms: np.ndarray) -> np.ndarray:
    """Model bond lengths (Å), shape (n,)."""
    out = np.empty(atoms.shape[0])
    for r in range(atoms.shape[0]):
        i = atoms[r, 0]
        j = atoms[r, 1]
        dx = xyz[j, 0] - xyz[i, 0]
        dy = xyz[j, 1] - xyz[i, 1]
        dz = xyz[j, 2] - xyz[i, 2]
        out[r] = math.sqrt(dx * dx + dy * dy + dz * dz)
    return out
