"""Distance restraints with a top-out potential (hydrogen bonds, base pairs).

For a restraint on atoms ``(i, j)`` with distance ``d = |x_j - x_i|`` and residual
``delta = d - ideal``, reduced by a flat-bottom half-width ``f >= 0`` (cctbx's ``slack``:
``delta -> sign(delta) max(|delta| - f, 0)``, no force while ``|d - ideal| <= f``)::

    E = w L^2 (1 - exp(-delta^2 / L^2))        L > 0   (top-out)
    E = w delta^2                              L <= 0  (plain harmonic)

with ``w = 1 / sigma^2`` and ``L`` the top-out limit in Å. Near the target ``E ~ w delta^2``
(the Taylor expansion of the exponential), so the restraint behaves like a harmonic bond of
standard deviation sigma; the restoring force ``dE/dd = 2 w delta exp(-delta^2/L^2)`` peaks at
``|delta| = L/sqrt(2)`` and decays to zero beyond a few ``L``, where E levels off at the
plateau ``w L^2``. A hydrogen bond that was annotated wrongly (its atoms far apart in the
map) therefore costs a bounded amount and cannot drag the chain across the map. The form is
the one of cctbx's top-out restraints, written with the limit as a distance.

Kernels are pure functions over flat arrays: ``atoms`` (n, 2) int64, ``ideal``, ``weight``,
``limit``, ``flat`` (n,) float64. Gradients are *accumulated* into the array passed in.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def distance_topout_value_and_gradient(
    xyz: np.ndarray,
    atoms: np.ndarray,
    ideal: np.ndarray,
    weight: np.ndarray,
    limit: np.ndarray,
    flat: np.ndarray,
    grad: np.ndarray,
) -> float:
    """Top-out distance target ``T = sum_r E_r`` and its gradient.

    Parameters
    ----------
    xyz : (N, 3) float64
        Coordinates in Å.
    atoms : (n, 2) int64
        Restrained atom pairs.
    ideal : (n,) float64
        Target distances, Å.
    weight : (n,) float64
        1 / sigma^2, Å^-2.
    limit : (n,) float64
        Top-out limit L, Å; ``L <= 0`` gives a plain harmonic restraint.
    flat : (n,) float64
        Flat-bottom half-width f >= 0, Å (0: none).
    grad : (N, 3) float64
        Gradient buffer; dT/dxyz is added to it.

    Returns
    -------
    float
        The target value T (dimensionless).

    Notes
    -----
    Coincident atoms (d = 0) contribute their (finite) energy but no gradient: the direction
    is undefined there, and skipping it keeps the gradient free of NaN.
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
        if delta > flat[r]:
            delta -= flat[r]
        elif delta < -flat[r]:
            delta += flat[r]
        else:
            continue
        w = weight[r]
        lim = limit[r]
        if lim > 0.0:
            l2 = lim * lim
            x = delta * delta / l2
            # -expm1(-x) = 1 - exp(-x) without cancellation for small residuals
            total += -w * l2 * math.expm1(-x)
            dedd = 2.0 * w * delta * math.exp(-x)
        else:
            total += w * delta * delta
            dedd = 2.0 * w * delta
        if d > 0.0:
            f = dedd / d
            grad[j, 0] += f * dx
            grad[j, 1] += f * dy
            grad[j, 2] += f * dz
            grad[i, 0] -= f * dx
            grad[i, 1] -= f * dy
            grad[i, 2] -= f * dz
    return total


@njit(nogil=True, cache=True)
def distance_topout_value_and_gradient_batch(
    xyz: np.ndarray,
    atoms: np.ndarray,
    ideal: np.ndarray,
    weight: np.ndarray,
    limit: np.ndarray,
    flat: np.ndarray,
    grad: np.ndarray,
    values: np.ndarray,
) -> None:
    """Batched :func:`distance_topout_value_and_gradient` for xyz (K, N, 3), one topology.

    Adds each model's value to ``values[k]`` and its gradient to ``grad[k]``.
    """
    for k in range(xyz.shape[0]):
        values[k] += distance_topout_value_and_gradient(
            xyz[k], atoms, ideal, weight, limit, flat, grad[k])
