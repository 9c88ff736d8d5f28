"""Isotropic ADP (B-factor) kernels: the B gradient of the density-correlation target, the
bonded-B similarity restraint, and group (one B per residue) reduction.

Density correlation with respect to B
-------------------------------------
The target is the one of :mod:`varref.engine.cc_target`, ``T = -CC(rho_model, rho_target)``
over a fixed mask M, now as a function of the atoms' isotropic B at fixed coordinates.
Each atom's density (:mod:`varref.engine.model_map`) is, within its truncation radius R,

    rho_i(r) = sum_k A_k exp(-c_k r^2) - rho_i(R),
    A_k = occ a_k (4 pi / B_k)^(3/2),  c_k = 4 pi^2 / B_k,  B_k = b_k + B_i + B_blur.

With ``dB_k/dB_i = 1``: ``dA_k/dB_i = -3/2 A_k / B_k`` and ``dc_k/dB_i = -c_k / B_k``, so

    d/dB_i [A_k exp(-c_k r^2)] = A_k exp(-c_k r^2) (c_k r^2 - 3/2) / B_k
                               = A_k exp(-c_k r^2) (c_k r^2 - 3/2) c_k / (4 pi^2).

The truncation radius moves with B: ``R^2 = ln(1/cutoff) / c_min`` and ``1/c_min =
B_kmax / (4 pi^2)``, so ``dR^2/dB_i = R^2 c_min / (4 pi^2)``, and the subtracted constant
changes by

    d rho_i(R)/dB_i = sum_k A_k exp(-c_k R^2) c_k / (4 pi^2) (c_k R^2 - 3/2 - c_min R^2).

Grid points entering or leaving the sphere as R moves carry density 0 (the density is
continuous at R), so they add nothing. With ``g(n) = dT/drho_model(n)`` (zero outside M;
see ``cc_target``)

    dT/dB_i = sum_{n within R of x_i} g(n) [d/dB_i sum_k A_k exp(-c_k r_n^2) - d rho_i(R)/dB_i].

The sum runs over exactly the grid points (stencil and truncation) the model-map kernel
adds the atom to, with the same separable Gaussian tables.

Bonded-B restraint
------------------
``R(B) = sum_p w_p (B_i - B_j)^2 / ((B_i + B_j) / 2)`` over pairs p = (i, j): the isotropic
ADP similarity restraint of phenix.refine (Afonine et al. 2012, ``adp_restraints.iso`` with
``average_power`` ~ 1) applied to bonded pairs. Dividing by the pair's mean B lets mobile
regions differ more in absolute terms, as their B differences do in refined structures.

    dR/dB_i = w (2 d / m - d^2 / (2 m^2)),  dR/dB_j = w (-2 d / m - d^2 / (2 m^2)),
    d = B_i - B_j,  m = (B_i + B_j) / 2.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from varref.engine.cc_target import (
    CorrelationData,
    correlation_data,
    derivative_grid,
    masked_correlation,
)
from varref.engine.interpolation import as_kernel_grid
from varref.engine.parallel import scratch_grid
from varref.engine.model_map import (
    CORRELATION_CUTOFF,
    UNROLLED_GAUSSIANS,
    _axis_gaussians,
    _gaussian_tables,
    _max_extent,
    _row_span,
    add_model_density,
    atom_gaussians,
    cutoff_radii,
    gather_over_atoms,
    grid_index_range,
)

__all__ = [
    "CorrelationData",
    "correlation_data",
    "cc_b_value_gradient",
    "b_gradient_from_map_gradient",
    "b_similarity_value_gradient",
    "sum_by_group",
]

_FOUR_PI_SQ = 4.0 * math.pi**2


# --------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------


@njit(nogil=True, cache=True)
def _b_gradient_kernel(xyz, amplitude, exponent, radius, origin, voxel_size, map_gradient,
                       gradient):
    """gradient[i] = sum_g map_gradient[g] d rho_i(g) / d B_i over atom i's sphere."""
    nz, ny, nx = map_gradient.shape
    flat = map_gradient.reshape(-1)
    n_gauss = amplitude.shape[1]
    extent = _max_extent(radius, voxel_size)
    table_x, table_y, table_z, delta_x, delta_y, delta_z, square_x, row_q = \
        _gaussian_tables(extent, n_gauss)
    row_s = np.zeros(row_q.size)
    for i in range(xyz.shape[0]):
        gradient[i] = 0.0
        r = radius[i]
        if not r > 0.0:
            continue
        x = xyz[i, 0]
        y = xyz[i, 1]
        z = xyz[i, 2]
        x_lo, x_hi = grid_index_range(x, r, origin[0], voxel_size[0], nx)
        y_lo, y_hi = grid_index_range(y, r, origin[1], voxel_size[1], ny)
        z_lo, z_hi = grid_index_range(z, r, origin[2], voxel_size[2], nz)
        if x_lo > x_hi or y_lo > y_hi or z_lo > z_hi:
            continue
        _axis_gaussians(x, origin[0], voxel_size[0], x_lo, x_hi, exponent[i], table_x, delta_x)
        _axis_gaussians(y, origin[1], voxel_size[1], y_lo, y_hi, exponent[i], table_y, delta_y)
        _axis_gaussians(z, origin[2], voxel_size[2], z_lo, z_hi, exponent[i], table_z, delta_z)
        n_x = x_hi - x_lo + 1
        for jx in range(n_x):
            square_x[jx] = delta_x[jx] * delta_x[jx]
        r2 = r * r
        c_min = exponent[i, 0]
        for k in range(1, n_gauss):
            if exponent[i, k] < c_min:
                c_min = exponent[i, k]
        # derivative of the subtracted rho_i(R), R moving with B (module docstring)
        d_rho_at_r = 0.0
        for k in range(n_gauss):
            c = exponent[i, k]
            d_rho_at_r += amplitude[i, k] * c * math.exp(-c * r2) * (c * r2 - 1.5 - c_min * r2)
        d_rho_at_r /= _FOUR_PI_SQ
        total = 0.0  # sum_g w(g) dGaussians/dB
        weight_sum = 0.0  # sum_g w(g), multiplies the constant d rho_i(R)/dB
        for jz in range(z_hi - z_lo + 1):
            dz = delta_z[jz]
            for jy in range(y_hi - y_lo + 1):
                dy = delta_y[jy]
                dyz2 = dz * dz + dy * dy
                if dyz2 > r2:
                    continue
                # per row: sum_k P_k t_x,k (c_k (dx^2 + dyz^2) - 3/2) = sum_k t_x,k (Q_k + dx^2 S_k)
                # (Q, S zero-padded to the unrolled width, as the tables)
                for k in range(n_gauss):
                    c = exponent[i, k]
                    p = amplitude[i, k] * c * table_z[jz, k] * table_y[jy, k]
                    row_q[k] = p * (c * dyz2 - 1.5)
                    row_s[k] = p * c
                jx_lo, jx_hi = _row_span(square_x, n_x, r2 - dyz2)
                start = ((z_lo + jz) * ny + y_lo + jy) * nx + x_lo
                if n_gauss <= UNROLLED_GAUSSIANS:
                    q0, q1, q2 = row_q[0], row_q[1], row_q[2]
                    s0, s1, s2 = row_s[0], row_s[1], row_s[2]
                    # zero weights (off the mask) are multiplied, not tested (model_map)
                    for jx in range(jx_lo, jx_hi + 1):
                        weight = flat[start + jx]
                        dx2 = square_x[jx]
                        total += weight * (table_x[jx, 0] * (q0 + dx2 * s0)
                                           + table_x[jx, 1] * (q1 + dx2 * s1)
                                           + table_x[jx, 2] * (q2 + dx2 * s2))
                        weight_sum += weight
                else:
                    for jx in range(jx_lo, jx_hi + 1):
                        weight = flat[start + jx]
                        if weight == 0.0:
                            continue
                        dx2 = square_x[jx]
                        value = 0.0
                        for k in range(n_gauss):
                            value += table_x[jx, k] * (row_q[k] + dx2 * row_s[k])
                        total += weight * value
                        weight_sum += weight
        gradient[i] = total / _FOUR_PI_SQ - weight_sum * d_rho_at_r


@njit(nogil=True, cache=True)
def _b_similarity_kernel(b, pairs, weight, gradient):
    value = 0.0
    for i in range(gradient.shape[0]):
        gradient[i] = 0.0
    for p in range(pairs.shape[0]):
        i = pairs[p, 0]
        j = pairs[p, 1]
        d = b[i] - b[j]
        m = 0.5 * (b[i] + b[j])
        w = weight[p]
        value += w * d * d / m
        common = -w * d * d / (2.0 * m * m)
        gradient[i] += w * 2.0 * d / m + common
        gradient[j] += -w * 2.0 * d / m + common
    return value


@njit(nogil=True, cache=True)
def _sum_by_group_kernel(values, group, out):
    for g in range(out.shape[0]):
        out[g] = 0.0
    for i in range(values.shape[0]):
        g = group[i]
        if g >= 0:
            out[g] += values[i]


# --------------------------------------------------------------------------------------
# Python wrappers
# --------------------------------------------------------------------------------------


def _b_gradient_parts(xyz, amplitude, exponent, radius, origin, voxel_size, map_gradient,
                      gradient):
    """``_b_gradient_kernel`` over atom ranges in threads (``model_map.gather_over_atoms``)."""
    gather_over_atoms(_b_gradient_kernel, xyz, amplitude, exponent, radius, origin, voxel_size,
                      map_gradient, gradient)


def b_gradient_from_map_gradient(map_gradient: np.ndarray, origin: np.ndarray,
                                 voxel_size: np.ndarray, xyz: np.ndarray, amplitude: np.ndarray,
                                 exponent: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Chain rule through the model map: dT/dB_i = sum_g dT/drho(g) d rho_i(g)/dB_i.

    Parameters
    ----------
    map_gradient : (nz, ny, nx) float64
        dT/drho_model per grid point (zeros are skipped).
    origin, voxel_size : (3,) float64
    xyz : (N, 3) float64
    amplitude, exponent : (N, G) float64
        From ``model_map.atom_gaussians`` (occupancy included in the amplitude).
    radius : (N,) float64
        From ``model_map.cutoff_radii(exponent, cutoff)``: the derivative of the truncation
        assumes exactly this radius.

    Returns
    -------
    gradient : (N,) float64, Å^-2 times the units of T.
    """
    map_gradient, origin, voxel_size = as_kernel_grid(map_gradient, origin, voxel_size)
    xyz = np.ascontiguousarray(xyz, dtype=np.float64)
    amplitude = np.ascontiguousarray(amplitude, dtype=np.float64)
    exponent = np.ascontiguousarray(exponent, dtype=np.float64)
    radius = np.ascontiguousarray(radius, dtype=np.float64)
    n = xyz.shape[0]
    if amplitude.shape[0] != n or exponent.shape != amplitude.shape or radius.shape != (n,):
        raise ValueError("amplitude/exponent (N, G) and radius (N,) must match xyz (N, 3)")
    gradient = np.empty(n, dtype=np.float64)
    _b_gradient_parts(xyz, amplitude, exponent, radius, origin, voxel_size, map_gradient,
                      gradient)
    return gradient


def cc_b_value_gradient(xyz: np.ndarray, data: CorrelationData, coeff_a: np.ndarray,
                        coeff_b: np.ndarray, b_iso: np.ndarray,
                        occupancy: np.ndarray | None = None, blur: float = 0.0,
                        cutoff: float = CORRELATION_CUTOFF, gradient: bool = True
                        ) -> tuple[float, np.ndarray | None]:
    """T = -CC(model map, target) over the mask and dT/dB per atom, at fixed coordinates.

    Parameters
    ----------
    xyz : (N, 3) float64
        Coordinates, Å.
    data : CorrelationData
        Target map and mask (:func:`correlation_data`).
    coeff_a, coeff_b : (N, 5) float64
        Scattering-factor coefficients (``model_map.scattering_coefficients``).
    b_iso : (N,) float64
        Isotropic B per atom, Å^2 (``b_k + B + blur`` must be positive).
    occupancy : (N,) float64, optional
    blur : float
        Resolution blur B, Å^2 (``model_map.resolution_blur(d)``).
    cutoff : float
        Peak-relative truncation of each atom (default ``model_map.CORRELATION_CUTOFF``).
    gradient : bool
        False skips the gradient pass (line searches over one overall B).

    Returns
    -------
    value : float
        -CC in [-1, 1]; (0.0, zeros) when the model map or target is constant on the mask.
    gradient : (N,) float64 or None
        dT/dB, Å^-2 (None when not asked for).
    """
    xyz = np.ascontiguousarray(xyz, dtype=np.float64)
    b_iso = np.ascontiguousarray(b_iso, dtype=np.float64)
    zeros = np.zeros(len(xyz)) if gradient else None
    amplitude, exponent = atom_gaussians(coeff_a, coeff_b, b_iso, occupancy, blur)
    radius = cutoff_radii(exponent, cutoff)
    # float64 model map: the gradient is checked against finite differences at 1e-4
    model = scratch_grid(data.shape, np.float64, "correlation model map")
    add_model_density(model, data.origin, data.voxel_size, xyz, amplitude, exponent, radius,
                      zero=True)
    # dCC/drho on a grid that is zero outside the mask (points the kernel skips)
    derivative = derivative_grid(data) if gradient else None
    cc = masked_correlation(model, data, derivative)
    if cc is None:
        return 0.0, zeros
    if not gradient:
        return -cc, None
    dcc_db = np.empty(len(xyz), dtype=np.float64)
    _b_gradient_parts(xyz, amplitude, exponent, radius, data.origin, data.voxel_size,
                      derivative, dcc_db)
    return -cc, -dcc_db


def b_similarity_value_gradient(b_iso: np.ndarray, pairs: np.ndarray,
                                weight: np.ndarray | float = 1.0) -> tuple[float, np.ndarray]:
    """Bonded-B restraint ``sum_p w_p (B_i - B_j)^2 / ((B_i + B_j)/2)`` and its gradient.

    Parameters
    ----------
    b_iso : (N,) float64
        B per atom (must be positive for every restrained atom), Å^2.
    pairs : (P, 2) int64
        Restrained atom pairs (bonds).
    weight : (P,) float64 or float
        Weight per pair.

    Returns
    -------
    value : float, Å^2 (times the weight's units)
    gradient : (N,) float64
    """
    b_iso = np.ascontiguousarray(b_iso, dtype=np.float64)
    pairs = np.ascontiguousarray(pairs, dtype=np.int64).reshape(-1, 2)
    weight = np.ascontiguousarray(np.broadcast_to(np.asarray(weight, dtype=np.float64),
                                                  (len(pairs),)))
    if len(pairs) and (pairs.min() < 0 or pairs.max() >= len(b_iso)):
        raise ValueError("pair index out of range")
    gradient = np.empty(len(b_iso), dtype=np.float64)
    value = _b_similarity_kernel(b_iso, pairs, weight, gradient)
    return float(value), gradient


def sum_by_group(values: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """Per-group sums of per-atom values (group B: dT/dB_g = sum over the group's atoms).

    Parameters
    ----------
    values : (N,) float64
    group : (N,) int64
        Group of each atom, 0..n_groups-1; negative entries are left out.
    n_groups : int

    Returns
    -------
    (n_groups,) float64
    """
    values = np.ascontiguousarray(values, dtype=np.float64)
    group = np.ascontiguousarray(group, dtype=np.int64)
    if group.shape != values.shape:
        raise ValueError("group must have one entry per value")
    if len(group) and group.max() >= n_groups:
        raise ValueError("group index out of range")
    out = np.empty(int(n_groups), dtype=np.float64)
    _sum_by_group_kernel(values, group, out)
    return out
