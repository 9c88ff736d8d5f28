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

Cost. Only mask points enter T, so the fixed half of the target (:class:`CorrelationData`:
the map cut to the mask's bounding box, the mask's flat indices, the centred target) is
prepared once and each evaluation touches only the atoms' spheres and that box, never the
whole map. Callers that evaluate T many times pass merged Gaussians
(``model_map.merged_coefficients``), which cuts the work per grid point 2-3 fold.
"""

from __future__ import annotations

import math
import threading

import numpy as np
from numba import njit

from varref.engine.interpolation import as_kernel_grid
from varref.engine.parallel import run_chunks, scratch_grid
from varref.engine.model_map import (
    CORRELATION_CUTOFF,
    add_model_density,
    atom_gaussians,
    coordinate_gradient_parts,
    cutoff_radii,
)

__all__ = ["CorrelationData", "correlation_data", "cc_value_gradient", "cc_target_value_gradient",
           "masked_correlation", "derivative_grid"]


class CorrelationData:
    """The fixed half of a CC target: the map over the mask's bounding box, the mask points
    and the centred target over them.

    Attributes
    ----------
    shape : (nz, ny, nx)
        Shape of the (cropped) grid the model map is computed on.
    origin, voxel_size : (3,) float64
        Placement of that grid (Å).
    inside : (M,) int64
        Flat indices of the mask points in that grid.
    t_centred : (M,) float64
        Target minus its mean over the mask.
    s_tt : float
        ``sum t_centred^2``.
    chunks : list of (start, stop)
        Ranges of ``inside`` of :data:`MASK_CHUNK` points (the last shorter), with their
        ``chunk_counts`` and ``chunk_t_sums`` (sum of ``t_centred``) as float64 arrays.
    """

    def __init__(self, target_map: np.ndarray, origin: np.ndarray, voxel_size: np.ndarray,
                 mask: np.ndarray, crop: bool = True) -> None:
        target_map, origin, voxel_size = as_kernel_grid(target_map, origin, voxel_size)
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != target_map.shape:
            raise ValueError(f"mask shape {mask.shape} differs from the map {target_map.shape}")
        if crop and mask.any():
            # T reads mask points only: the model map is needed over their bounding box
            lower, upper = [], []
            for axis in range(3):
                hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
                lower.append(int(hit[0]))
                upper.append(int(hit[-1]) + 1)
            box = tuple(slice(lo, hi) for lo, hi in zip(lower, upper))
            target_map, mask = target_map[box], mask[box]
            origin = origin + np.array(lower[::-1], dtype=np.float64) * voxel_size
        self.shape = target_map.shape
        self.origin, self.voxel_size = origin, voxel_size
        self.inside = np.flatnonzero(mask)
        t = target_map.ravel()[self.inside].astype(np.float64)
        self.t_centred = t - t.mean() if t.size else t
        self.s_tt = float(np.dot(self.t_centred, self.t_centred))
        self.chunks = _mask_chunks(self.inside.size)
        self.chunk_counts = np.array([hi - lo for lo, hi in self.chunks], dtype=np.float64)
        self.chunk_t_sums = np.array([self.t_centred[lo:hi].sum() for lo, hi in self.chunks])


#: Mask points per chunk of the masked sums and of dCC/drho: chunks are spread over threads
#: and their sums combined in chunk order, so the numbers do not depend on the thread count
#: (64 k points of model map and target, ~1 MB, stay in a core's cache between the chunk's
#: two passes).
MASK_CHUNK = 65536


@njit(nogil=True, cache=True)
def _chunk_sums(model, inside, t_centred, lo, hi):
    """Over mask points lo..hi-1: the chunk's mean of the model map, its centred sum of
    squares and its centred cross sum with the target (two passes over the cached chunk)."""
    n = hi - lo
    mean = 0.0
    for i in range(lo, hi):
        mean += model[inside[i]]
    mean /= n
    s_mm = 0.0
    s_mt = 0.0
    for i in range(lo, hi):
        v = model[inside[i]] - mean
        s_mm += v * v
        s_mt += v * t_centred[i]
    return mean, s_mm, s_mt


@njit(nogil=True, cache=True)
def _combine_chunks(counts, means, s_mm, s_mt, t_sums):
    """Mean, S_mm and S_mt over the whole mask from the chunks' (Chan et al. 1979):
    ``S_mm = sum_c [S_mm,c + n_c (mean_c - mean)^2]``, ``S_mt = sum_c [S_mt,c + (mean_c -
    mean) sum_c t]``, in chunk order."""
    total = 0.0
    n = 0.0
    for c in range(counts.size):
        total += counts[c] * means[c]
        n += counts[c]
    mean = total / n
    mm = 0.0
    mt = 0.0
    for c in range(counts.size):
        shift = means[c] - mean
        mm += s_mm[c] + counts[c] * shift * shift
        mt += s_mt[c] + shift * t_sums[c]
    return mean, mm, mt


@njit(nogil=True, cache=True)
def _density_derivative(model: np.ndarray, inside: np.ndarray, t_centred: np.ndarray,
                        mean: float, s_mm: float, norm: float, cc: float,
                        derivative: np.ndarray, lo: int, hi: int) -> None:
    """Write dCC/drho, ``t_c/norm - CC m_c/S_mm``, at the mask points lo..hi-1 of the flat
    ``derivative`` grid (its other points are left as they are)."""
    for i in range(lo, hi):
        point = inside[i]
        derivative[point] = t_centred[i] / norm - cc * (model[point] - mean) / s_mm


def _mask_chunks(n_points: int) -> list[tuple[int, int]]:
    return [(lo, min(lo + MASK_CHUNK, n_points)) for lo in range(0, n_points, MASK_CHUNK)]


_derivative_owner = threading.local()  # per thread: the grid and the mask it is zero off


def derivative_grid(data: CorrelationData) -> np.ndarray:
    """A float64 grid of ``data``'s shape, zero off its mask, kept per thread for
    :func:`masked_correlation`'s ``derivative``: the gradient kernels skip its zeros, and as
    the mask is fixed only its points change between evaluations (clearing the whole box
    and scattering dCC/drho into it cost ~2.5 ms more per evaluation on 3j6r's 3.4 M-point
    box, ``benchmarks/cc_term.py``). It is zeroed in full when it last served another mask
    (one streaming fill: faster than clearing the old mask's scattered points)."""
    grid = scratch_grid(data.shape, np.float64, "correlation dCC/drho")
    owner = _derivative_owner
    if getattr(owner, "grid", None) is not grid or owner.inside is not data.inside:
        grid.fill(0.0)
        owner.grid, owner.inside = grid, data.inside  # held, so never a recycled id
    return grid


def masked_correlation(model: np.ndarray, data: CorrelationData,
                       derivative: np.ndarray | None = None) -> float | None:
    """CC of a model map (on ``data``'s grid, float64) with the target over the mask; with a
    ``derivative`` grid (:func:`derivative_grid`, zero off the mask) dCC/drho is written at
    its mask points. None when the correlation is undefined (fewer than 2 points, or a
    constant map or target); ``derivative`` is then not written."""
    flat = model.reshape(-1)
    if data.inside.size < 2 or data.s_tt <= 0.0:
        return None
    if derivative is not None and (derivative.shape != model.shape
                                   or not derivative.flags.c_contiguous):
        raise ValueError("derivative must be a C-contiguous grid of the model map's shape")
    n_chunks = len(data.chunks)
    means, s_mm_c, s_mt_c = np.empty(n_chunks), np.empty(n_chunks), np.empty(n_chunks)

    def sums(lo, hi, c):
        means[c], s_mm_c[c], s_mt_c[c] = _chunk_sums(flat, data.inside, data.t_centred, lo, hi)

    run_chunks(sums, data.chunks)
    mean, s_mm, s_mt = _combine_chunks(data.chunk_counts, means, s_mm_c, s_mt_c,
                                       data.chunk_t_sums)
    if s_mm <= 0.0:
        return None
    norm = math.sqrt(s_mm * data.s_tt)
    cc = s_mt / norm
    if derivative is not None:
        out = derivative.reshape(-1)

        def write(lo, hi, c):
            _density_derivative(flat, data.inside, data.t_centred, mean, s_mm, norm, cc, out,
                                lo, hi)

        run_chunks(write, data.chunks)
    return cc


def correlation_data(target_map: np.ndarray, origin: np.ndarray, voxel_size: np.ndarray,
                     mask: np.ndarray, crop: bool = True) -> CorrelationData:
    """Precompute the mask and centred target for repeated CC evaluations
    (:func:`cc_value_gradient`, ``adp.cc_b_value_gradient``); ``crop`` cuts the grid to the
    mask's bounding box (exact: the target reads mask points only)."""
    return CorrelationData(target_map, origin, voxel_size, mask, crop)


def cc_value_gradient(xyz: np.ndarray, data: CorrelationData, coeff_a: np.ndarray,
                      coeff_b: np.ndarray, b_iso: np.ndarray | float,
                      occupancy: np.ndarray | None = None, blur: float = 0.0,
                      cutoff: float = CORRELATION_CUTOFF) -> tuple[float, np.ndarray]:
    """T = -CC(model map, target) over the prepared mask and dT/dx.

    Parameters
    ----------
    xyz : (N, 3) float64
        Coordinates, Å.
    data : CorrelationData
        Target and mask (:func:`correlation_data`).
    coeff_a, coeff_b : (N, G) float64
        Scattering-factor coefficients (``model_map.scattering_coefficients``, or merged
        ones from ``model_map.merged_coefficients``).
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
        -CC, in [-1, 1]. If the model map or the target is constant over the mask (e.g.
        every atom far outside it) the correlation is undefined and (0.0, zero gradient) is
        returned.
    gradient : (N, 3) float64
        dT/dx, Å^-1.
    """
    xyz = np.ascontiguousarray(xyz, dtype=np.float64)
    amplitude, exponent = atom_gaussians(coeff_a, coeff_b, b_iso, occupancy, blur)
    radius = cutoff_radii(exponent, cutoff)
    # float64 model map: the gradient is checked against finite differences at 1e-4
    model = scratch_grid(data.shape, np.float64, "correlation model map")
    add_model_density(model, data.origin, data.voxel_size, xyz, amplitude, exponent, radius,
                      zero=True)
    # dCC/drho on a grid that is zero outside the mask (points the kernel skips)
    derivative = derivative_grid(data)
    cc = masked_correlation(model, data, derivative)
    if cc is None:
        return 0.0, np.zeros_like(xyz)
    dcc_dx = np.empty(xyz.shape, dtype=np.float64)
    coordinate_gradient_parts(xyz, amplitude, exponent, radius, data.origin, data.voxel_size,
                              derivative, dcc_dx)
    return -cc, -dcc_dx


def cc_target_value_gradient(xyz: np.ndarray, target_map: np.ndarray, origin: np.ndarray,
                             voxel_size: np.ndarray, mask: np.ndarray, coeff_a: np.ndarray,
                             coeff_b: np.ndarray, b_iso: np.ndarray | float,
                             occupancy: np.ndarray | None = None, blur: float = 0.0,
                             cutoff: float = CORRELATION_CUTOFF) -> tuple[float, np.ndarray]:
    """T = -CC(model map, target map) over ``mask`` and dT/dx, for a single evaluation
    (repeated evaluations prepare :func:`correlation_data` once and call
    :func:`cc_value_gradient`).

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
    coeff_a, coeff_b, b_iso, occupancy, blur, cutoff
        As in :func:`cc_value_gradient`.

    Returns
    -------
    value : float
        -CC, in [-1, 1] (0.0 with a zero gradient when undefined).
    gradient : (N, 3) float64
        dT/dx, Å^-1.
    """
    data = correlation_data(target_map, origin, voxel_size, mask)
    return cc_value_gradient(xyz, data, coeff_a, coeff_b, b_iso, occupancy, blur, cutoff)
