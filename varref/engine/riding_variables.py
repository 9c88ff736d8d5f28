"""Riding hydrogens between the minimiser's variables and full coordinates (numba kernels).

With riding hydrogens (:mod:`varref.refinement.riding`) the minimiser's variables are the
atoms that do not ride; every evaluation scatters them into full coordinates, places each
hydrogen at its parent plus its offset, and folds the full gradient back (a hydrogen's
gradient added to its parent's, since x_H = x_P + d_H). In numpy (boolean-mask assignment,
fancy indexing, one ``bincount`` per row and axis) they cost 0.34 ms each per evaluation on a
17k-atom model (~0.3 s of a 3j6r refinement); these loops take 0.05 ms and do the same
arithmetic in the same order, so the numbers are bit for bit those of the numpy formulas
(tested). The one-problem loops are also those of the fused minimiser
(:mod:`varref.engine.fused_lbfgs`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["scatter_riding", "fold_riding", "scatter_row", "fold_row"]


@njit(nogil=True, cache=True)
def scatter_row(x, full, variable_index, hydrogen, parent, offsets):
    """One problem: ``x`` (n, 3) into ``full`` (N, 3) at ``variable_index``, then every rider
    at its parent plus its ``offsets`` row (H, 3). Also called inside the fused minimiser."""
    for j in range(variable_index.shape[0]):
        a = variable_index[j]
        for c in range(3):
            full[a, c] = x[j, c]
    for r in range(hydrogen.shape[0]):
        for c in range(3):
            full[hydrogen[r], c] = full[parent[r], c] + offsets[r, c]


@njit(nogil=True, cache=True)
def fold_row(gradient, variable_index, hydrogen, parent_slot, summed, out):
    """One problem: ``out`` (n, 3) = the gradient (N, 3) on the variables plus, per parent,
    the sum of its riders' gradients (summed first, in rider order, as ``np.bincount``;
    ``summed`` (n, 3) is scratch). Also called inside the fused minimiser."""
    n_variables = variable_index.shape[0]
    if hydrogen.shape[0] == 0:
        for j in range(n_variables):
            for c in range(3):
                out[j, c] = gradient[variable_index[j], c]
        return
    summed[:, :] = 0.0
    for r in range(hydrogen.shape[0]):
        slot = parent_slot[r]
        if slot >= 0:
            for c in range(3):
                summed[slot, c] += gradient[hydrogen[r], c]
    for j in range(n_variables):
        for c in range(3):
            out[j, c] = gradient[variable_index[j], c] + summed[j, c]


@njit(nogil=True, cache=True)
def _scatter_kernel(x, full, variable_index, hydrogen, parent, offsets):
    for row in range(full.shape[0]):
        scatter_row(x[row], full[row], variable_index, hydrogen, parent, offsets[row])


@njit(nogil=True, cache=True)
def _fold_kernel(gradient, variable_index, hydrogen, parent_slot, folded):
    summed = np.empty((variable_index.shape[0], 3))
    for row in range(gradient.shape[0]):
        fold_row(gradient[row], variable_index, hydrogen, parent_slot, summed, folded[row])


def _indices(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int64)


def scatter_riding(x: np.ndarray, full: np.ndarray, variable_index: np.ndarray,
                   hydrogen: np.ndarray, parent: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Write minimiser variables into full coordinates, in place, and place the riders.

    Parameters
    ----------
    x : (R, 3 n) float64
        Variables of R rows (problems), the atoms ``variable_index`` in order.
    full : (R, N, 3) float64, C-contiguous
        Full coordinates; atoms that are neither variables nor riders keep their values.
    variable_index : (n,) int64
    hydrogen, parent : (H,) int64
        Each riding hydrogen and its parent (a parent written before its riders are placed).
    offsets : (R, H, 3) float64
        x_H - x_P of each rider, per row.

    Returns
    -------
    full
    """
    _scatter_kernel(np.ascontiguousarray(x, dtype=np.float64).reshape(len(full), -1, 3), full,
                    _indices(variable_index), _indices(hydrogen), _indices(parent),
                    np.ascontiguousarray(offsets, dtype=np.float64))
    return full


def fold_riding(gradient: np.ndarray, variable_index: np.ndarray, hydrogen: np.ndarray,
                parent_slot: np.ndarray) -> np.ndarray:
    """The gradient on the variables: (R, N, 3) → (R, n, 3), each rider's gradient summed
    into its parent's slot (``parent_slot`` (H,), -1 where the parent is not a variable)."""
    gradient = np.ascontiguousarray(gradient, dtype=np.float64)
    folded = np.empty((gradient.shape[0], variable_index.shape[0], 3))
    _fold_kernel(gradient, _indices(variable_index), _indices(hydrogen), _indices(parent_slot),
                 folded)
    return folded
