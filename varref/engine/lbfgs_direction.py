"""L-BFGS search direction of K problems with ring-buffer histories (numba kernel).

The two-loop recursion (Nocedal & Wright 2006, Alg. 7.4) for the rows ``members`` of the
minimiser's state, without copying their histories: problem k keeps its last ``n_stored[k]``
correction pairs in a ring of m slots, the newest at ``(head[k] - 1) mod m``. The initial
inverse Hessian is ``gamma I`` with ``gamma = s·y / y·y`` of the newest pair (1 without
pairs). Called once per iteration of :func:`varref.refinement.lbfgs.minimise_lbfgs`; in
Python the recursion costs more than the objective on small problems (the weight search's
segments).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["lbfgs_direction", "row_dot", "row_dots"]


@njit(nogil=True, cache=True)
def _direction_kernel(gradient, members, s_hist, y_hist, rho_hist, n_stored, head, out):
    m = s_hist.shape[1]
    n = s_hist.shape[2]
    alpha = np.empty(m)
    for row in range(members.shape[0]):
        k = members[row]
        stored = n_stored[k]
        q = out[row]
        for i in range(n):
            q[i] = gradient[row, i]
        for t in range(stored):  # newest to oldest
            j = (head[k] - 1 - t) % m
            dot = 0.0
            for i in range(n):
                dot += s_hist[k, j, i] * q[i]
            a = rho_hist[k, j] * dot
            alpha[j] = a
            for i in range(n):
                q[i] -= a * y_hist[k, j, i]
        gamma = 1.0
        if stored > 0:
            j = (head[k] - 1) % m
            sy = 0.0
            yy = 0.0
            for i in range(n):
                sy += s_hist[k, j, i] * y_hist[k, j, i]
                yy += y_hist[k, j, i] * y_hist[k, j, i]
            if yy > 0.0:
                gamma = sy / yy
        for i in range(n):
            q[i] *= gamma
        for t in range(stored - 1, -1, -1):  # oldest to newest
            j = (head[k] - 1 - t) % m
            dot = 0.0
            for i in range(n):
                dot += y_hist[k, j, i] * q[i]
            b = rho_hist[k, j] * dot
            for i in range(n):
                q[i] += (alpha[j] - b) * s_hist[k, j, i]
        for i in range(n):
            q[i] = -q[i]


@njit(nogil=True, cache=True)
def row_dot(a, b):
    """``a · b`` of two 1-D arrays summed in index order (the one dot product of the
    minimisers, so the Python and the fused paths agree to the last bit)."""
    total = 0.0
    for i in range(a.shape[0]):
        total += a[i] * b[i]
    return total


@njit(nogil=True, cache=True)
def _row_dots_kernel(a, b, out):
    for r in range(a.shape[0]):
        out[r] = row_dot(a[r], b[r])


def row_dots(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot products of two (k, n) float64 arrays, (k,)."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"row_dots needs two (k, n) arrays of one shape, got {a.shape}, {b.shape}")
    out = np.empty(a.shape[0])
    _row_dots_kernel(a, b, out)
    return out


def lbfgs_direction(gradient: np.ndarray, members: np.ndarray, s_hist: np.ndarray,
                    y_hist: np.ndarray, rho_hist: np.ndarray, n_stored: np.ndarray,
                    head: np.ndarray) -> np.ndarray:
    """Search directions ``-H_k g_k`` for the problems ``members``.

    Parameters
    ----------
    gradient : (k, n) float64
        Gradients of the problems ``members`` (row r belongs to ``members[r]``).
    members : (k,) int64
        Indices into the histories.
    s_hist, y_hist : (K, m, n) float64
        Correction pairs (ring buffers).
    rho_hist : (K, m) float64
        ``1 / s·y`` of each pair.
    n_stored, head : (K,) int64
        Pairs stored, and the slot the next pair goes to.

    Returns
    -------
    (k, n) float64
    """
    gradient = np.ascontiguousarray(gradient, dtype=np.float64)
    out = np.empty_like(gradient)
    _direction_kernel(gradient, np.ascontiguousarray(members, dtype=np.int64), s_hist, y_hist,
                      rho_hist, n_stored, head, out)
    return out
