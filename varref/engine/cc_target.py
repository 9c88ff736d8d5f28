"""Density-correlation map target with its analytic coordinate gradient.

The paper's eq. (5) (Afonine et al. 2018, Acta Cryst. D74, 531) is the overlap
``-sum_G rho_calc(n) rho_target(n)``; here it is used in its scale-free, normalised form,
the negative Pearson correlation over a fixed set of grid points M (the mask)::

    T(x) = -CC(rho_calc(x), rho_target) over M,
    CC = S_mt / sqrt(S_mm S_tt),   S_ab = sum_{n in M} (a_n - <a>)(b_n - <b>),

with ``rho_calc`` the Gaussian model map of :mod:`varref.engine.model_map`. The gradient
follows by the chain rule through the model map::

    dCC/drho_calc(n) = (t_n - <t>) / sqrt(S_mm S_tt) - CC (m_n - <m>) / S_mm   (n in M)
    dT/dx_i = - sum_{n in M} dCC/drho_calc(n) * d rho_i(n)/dx_i,
    d rho_i(n)/dx_i = sum_k A_ik exp(-c_ik |n - x_i|^2) 2 c_ik (n - x_i)

(the mean terms drop out because the centred sums vanish).

Fixed mask. The mask is an input and does not move with the atoms during an evaluation; the
caller builds it from the starting coordinates (e.g. :func:`varref.engine.correlation.
molecular_mask`, or an atom mask with a radius of about the resolution) and rebuilds it
between macro-cycles if the atoms have moved far. T is then a smooth function of x for a
given mask (the model map's per-atom truncation is continuous, see ``model_map``).
"""

from __future__ import annotations

import math

import numpy as np

from varref.engine.interpolation import as_kernel_grid
from varref.engine.model_map import (
    CORRELATION_CUTOFF,
    add_model_density,
    atom_gaussians,
    coordinate_gradient_from_map_gradient,
    cutoff_radii,
)

__all__ = ["cc_target_value_gradient"]


def cc_target_value_gradient(xyz: np.ndarray, target_map: np.ndarray, origin: np.ndarray,
                             voxel_size: np.ndarray, mask: np.ndarray, coeff_a: np.ndarray,
                             coeff_b: np.ndarray, b_iso: np.ndarray | float,
                             occupancy: np.ndarray | None = None, blur: float = 0.0,
                             cutoff: float = CORRELATION_CUTOFF) -> tuple[float, np.ndarray]:
    """T = -CC(model map, target map) over ``mask`` and dT/dx.

    Parameters
    ----------
    xyz : (N, 3) float64
        Coordinates, Å.
    target_map : (nz, ny, nx) float32 or float64
        Target map.
    origin, voxel_size : (3,) float64
        Grid placement (Å).
    mask : (nz, ny, nx) bool
        Grid points of the correlation (fixed during the evaluation).
    coeff_a, coeff_b : (N, 5) float64
        Scattering-factor coefficients (``model_map.scattering_coefficients``).
    b_iso : (N,) float64 or float
        Atomic B, Å^2.
    occupancy : (N,) float64, optional
    blur : float
        Resolution blur B, Å^2 (``model_map.resolution_blur(d)``).
    cutoff : float
        Peak-relative truncation of each atom (``model_map.cutoff_radii``; default
        ``model_map.CORRELATION_CUTOFF``).

    Returns
    -------
    value : float
        -CC, in [-1, 1]. If the model map is constant over the mask (e.g. every atom far
        outside it) the correlation is undefined and (0.0, zero gradient) is returned.
    gradient : (N, 3) float64
        dT/dx, Å^-1.
    """
    target_map, origin, voxel_size = as_kernel_grid(target_map, origin, voxel_size)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != target_map.shape:
        raise ValueError(f"mask shape {mask.shape} differs from the map {target_map.shape}")
    xyz = np.ascontiguousarray(xyz, dtype=np.float64)
    amplitude, exponent = atom_gaussians(coeff_a, coeff_b, b_iso, occupancy, blur)
    radius = cutoff_radii(exponent, cutoff)

    # float64 model map: the gradient is checked against finite differences at 1e-4.
    model = np.zeros(target_map.shape, dtype=np.float64)
    add_model_density(model, origin, voxel_size, xyz, amplitude, exponent, radius)

    inside = np.flatnonzero(mask)
    m = model.ravel()[inside]
    t = target_map.ravel()[inside].astype(np.float64)
    m_centred = m - m.mean()
    t_centred = t - t.mean()
    s_mm = float(np.dot(m_centred, m_centred))
    s_tt = float(np.dot(t_centred, t_centred))
    if inside.size < 2 or s_mm <= 0.0 or s_tt <= 0.0:
        return 0.0, np.zeros_like(xyz)
    norm = math.sqrt(s_mm * s_tt)
    cc = float(np.dot(m_centred, t_centred)) / norm

    dcc_drho = np.zeros(target_map.size, dtype=np.float64)
    dcc_drho[inside] = t_centred / norm - cc * m_centred / s_mm
    dcc_dx = coordinate_gradient_from_map_gradient(
        dcc_drho.reshape(target_map.shape), origin, voxel_size, xyz, amplitude, exponent,
        radius)
    return -cc, -dcc_dx
