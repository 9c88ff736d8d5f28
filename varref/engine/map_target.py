"""Atom-centred map target of phenix.real_space_refine, value and gradient in one pass.

Afonine et al. (2018) Acta Cryst. D74, 531, eqs (7) and (8)::

    T = - sum_m  w_m  rho_target(x_m)

with ``rho_target`` interpolated at the atomic centres (tricubic by default, see
:mod:`varref.engine.interpolation`) and per-atom weights ``w_m``: 1 for every atom is eq. (7);
e.g. the atomic number is eq. (8). A weight of 0 removes an atom from the target (no value,
no gradient, and the kernel skips it); that is how hydrogens are excluded by default, as in
Phenix. Atoms whose interpolation stencil leaves the map contribute nothing (no force).

The gradient is ``dT/dx_m = - w_m grad rho_target(x_m)``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from varref.engine.interpolation import (
    METHOD_TRICUBIC,
    as_kernel_grid,
    interpolation_method_code,
    tricubic_flat,
    trilinear_flat,
)

__all__ = [
    "map_target_weights",
    "map_target_value_gradient",
    "map_target_value_gradient_batched",
]


def map_target_weights(atomic_number: np.ndarray, is_hydrogen: np.ndarray | None = None,
                       scheme: str = "unit", include_hydrogens: bool = False) -> np.ndarray:
    """Per-atom weights ``w_m`` for the map target.

    Parameters
    ----------
    atomic_number : (N,) int
        Atomic numbers (hydrogen and deuterium are 1).
    is_hydrogen : (N,) bool, optional
        Hydrogen flags; defaults to ``atomic_number == 1``.
    scheme : {"unit", "atomic_number"}
        ``"unit"``: every atom weighs 1 (eq. 7, the Phenix default);
        ``"atomic_number"``: the weight is Z (eq. 8, "electron number").
    include_hydrogens : bool
        If False (default, as in Phenix) hydrogens get weight 0 and drop out of the target.

    Returns
    -------
    weights : (N,) float64
    """
    atomic_number = np.asarray(atomic_number)
    if is_hydrogen is None:
        is_hydrogen = atomic_number == 1
    is_hydrogen = np.asarray(is_hydrogen, dtype=bool)
    if is_hydrogen.shape != atomic_number.shape:
        raise ValueError("atomic_number and is_hydrogen must have the same shape")
    if scheme == "unit":
        weights = np.ones(atomic_number.shape, dtype=np.float64)
    elif scheme == "atomic_number":
        weights = atomic_number.astype(np.float64)
    else:
        raise ValueError(f"unknown weight scheme {scheme!r}; use 'unit' or 'atomic_number'")
    if not include_hydrogens:
        weights[is_hydrogen] = 0.0
    return weights


@njit(nogil=True, cache=True)
def _map_target_kernel(data, origin, voxel_size, xyz, weights, method, gradient):
    """T = -sum w rho(x); writes dT/dx into ``gradient`` (N, 3); returns T."""
    nz, ny, nx = data.shape
    flat = data.ravel()
    inv_x = 1.0 / voxel_size[0]
    inv_y = 1.0 / voxel_size[1]
    inv_z = 1.0 / voxel_size[2]
    total = 0.0
    for i in range(xyz.shape[0]):
        w = weights[i]
        if w == 0.0:  # excluded atom (e.g. hydrogen): no value, no force, no work
            gradient[i, 0] = 0.0
            gradient[i, 1] = 0.0
            gradient[i, 2] = 0.0
            continue
        ux = (xyz[i, 0] - origin[0]) * inv_x
        uy = (xyz[i, 1] - origin[1]) * inv_y
        uz = (xyz[i, 2] - origin[2]) * inv_z
        if method == METHOD_TRICUBIC:
            v, gx, gy, gz = tricubic_flat(flat, nx, ny, nz, ux, uy, uz)
        else:
            v, gx, gy, gz = trilinear_flat(flat, nx, ny, nz, ux, uy, uz)
        total -= w * v
        gradient[i, 0] = -w * gx * inv_x
        gradient[i, 1] = -w * gy * inv_y
        gradient[i, 2] = -w * gz * inv_z
    return total


@njit(nogil=True, cache=True)
def _map_target_batched_kernel(data, origin, voxel_size, xyz, weights, method, values,
                               gradients):
    for k in range(xyz.shape[0]):
        values[k] = _map_target_kernel(data, origin, voxel_size, xyz[k], weights, method,
                                       gradients[k])


def _prepare(data, origin, voxel_size, xyz, weights, trailing_ndim):
    data, origin, voxel_size = as_kernel_grid(data, origin, voxel_size)
    xyz = np.ascontiguousarray(xyz, dtype=np.float64)
    if xyz.ndim != trailing_ndim or xyz.shape[-1] != 3:
        expected = "(N, 3)" if trailing_ndim == 2 else "(K, N, 3)"
        raise ValueError(f"coordinates must have shape {expected}, got {xyz.shape}")
    n_atoms = xyz.shape[-2]
    if weights is None:
        weights = np.ones(n_atoms, dtype=np.float64)
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    if weights.shape != (n_atoms,):
        raise ValueError(f"weights must have shape ({n_atoms},), got {weights.shape}")
    return data, origin, voxel_size, xyz, weights


def map_target_value_gradient(data: np.ndarray, origin: np.ndarray, voxel_size: np.ndarray,
                              xyz: np.ndarray, weights: np.ndarray | None = None,
                              method: str = "tricubic", out: np.ndarray | None = None
                              ) -> tuple[float, np.ndarray]:
    """Map target T = -sum_m w_m rho(x_m) and its gradient for one model.

    Parameters
    ----------
    data : (nz, ny, nx) float32 (or float64)
        Target map.
    origin, voxel_size : (3,) float64
        Cartesian (x, y, z) of voxel [0, 0, 0] and voxel spacing, Å.
    xyz : (N, 3) float64
        Atomic coordinates, Å.
    weights : (N,) float64, optional
        Per-atom weights (see :func:`map_target_weights`); default all 1. Weight 0 excludes
        an atom.
    method : {"tricubic", "trilinear"}
    out : (N, 3) float64, optional
        Array to receive the gradient (avoids an allocation in tight loops).

    Returns
    -------
    value : float
    gradient : (N, 3) float64
        dT/dx in map units per Å.
    """
    data, origin, voxel_size, xyz, weights = _prepare(data, origin, voxel_size, xyz,
                                                      weights, 2)
    if out is None:
        out = np.empty(xyz.shape, dtype=np.float64)
    elif out.shape != xyz.shape or out.dtype != np.float64 or not out.flags.c_contiguous:
        raise ValueError("out must be a C-contiguous float64 array shaped like xyz")
    value = _map_target_kernel(data, origin, voxel_size, xyz, weights,
                               interpolation_method_code(method), out)
    return float(value), out


def map_target_value_gradient_batched(data: np.ndarray, origin: np.ndarray,
                                      voxel_size: np.ndarray, xyz: np.ndarray,
                                      weights: np.ndarray | None = None,
                                      method: str = "tricubic"
                                      ) -> tuple[np.ndarray, np.ndarray]:
    """Map target and gradient for K models (same atoms, same map) in one kernel call.

    Parameters
    ----------
    xyz : (K, N, 3) float64
        K coordinate sets of the same N atoms.
    data, origin, voxel_size, weights, method
        As in :func:`map_target_value_gradient`.

    Returns
    -------
    values : (K,) float64
    gradients : (K, N, 3) float64
    """
    data, origin, voxel_size, xyz, weights = _prepare(data, origin, voxel_size, xyz,
                                                      weights, 3)
    values = np.empty(xyz.shape[0], dtype=np.float64)
    gradients = np.empty(xyz.shape, dtype=np.float64)
    _map_target_batched_kernel(data, origin, voxel_size, xyz, weights,
                               interpolation_method_code(method), values, gradients)
    return values, gradients
