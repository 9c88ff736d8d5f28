"""Map interpolation at arbitrary Cartesian points; the point kernels also return analytic
gradients (the map target, :mod:`varref.engine.map_target`, uses them).

Two schemes, as in Afonine et al. (2018) Acta Cryst. D74, 531, Appendix B:

* **tricubic** (the default of phenix.real_space_refine): along each axis the cubic Hermite
  polynomial through ``f(0)`` and ``f(1)`` whose end slopes are the central differences
  ``(f(1) - f(-1)) / 2`` and ``(f(2) - f(0)) / 2`` (eqs 17, 23, 24), applied along x, y and z
  (eqs 19-21); the gradient differentiates one axis at a time (eq. 22) and is scaled by the
  inverse voxel size (eq. 27). This 1-D rule is the Catmull-Rom spline (Keys' cubic
  convolution with a = -1/2). The interpolant is C1 across cell faces.
* **trilinear**: the 8 corners of the cell; the gradient is discontinuous at cell faces.

Grid convention (fixed for varref): ``data[iz, iy, ix]`` of shape (nz, ny, nx), x fastest;
``origin`` is the Cartesian (x, y, z) of voxel [0, 0, 0] in Å and ``voxel_size`` the spacing
(x, y, z) in Å, so Cartesian ``p`` sits at fractional index ``(p - origin) / voxel_size``.

Outside the grid: a point whose stencil (4x4x4 for tricubic, 2x2x2 for trilinear) would
leave the grid gets value 0 and a zero gradient -- "outside = no density, no force". No
out-of-bounds read ever happens; NaN coordinates are treated as outside.

What the tricubic scheme reproduces exactly
-------------------------------------------
The 1-D rule reproduces polynomials of degree <= 2 exactly (central differences are exact
for quadratics, and the Hermite cubic through exact values and slopes is then the quadratic
itself). It does *not* reproduce cubics: for ``f(u) = u**3`` on a unit grid the estimated
slopes are too large by exactly 1 at both ends, so the interpolant is
``u**3 + t (1 - t) (1 - 2 t)`` on the cell ``[i, i+1]`` with ``t = u - i``; on a grid of step
h the error of ``x**3`` is ``h**3 t (1 - t) (1 - 2 t)`` (at most ``h**3 * sqrt(3) / 18``).
The 3-D scheme is the tensor product of the 1-D rule, so it reproduces every polynomial of
degree <= 2 in each variable separately (e.g. ``x**2 y**2 z**2``), values and gradients.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "interpolate",
    "tricubic_flat",
    "trilinear_flat",
    "interpolation_method_code",
    "as_kernel_grid",
    "METHOD_TRICUBIC",
    "METHOD_TRILINEAR",
]

#: Integer codes passed to the kernels (numba kernels take no strings).
METHOD_TRICUBIC = 0
METHOD_TRILINEAR = 1

#: Only FMA contraction: no "nnan"/"ninf", which would let the compiler drop the
#: NaN-safe bounds test.
_FASTMATH = {"contract"}


def interpolation_method_code(method: str) -> int:
    """Kernel code of an interpolation method name (``"tricubic"`` or ``"trilinear"``)."""
    if method == "tricubic":
        return METHOD_TRICUBIC
    if method == "trilinear":
        return METHOD_TRILINEAR
    raise ValueError(f"unknown interpolation method {method!r}; use 'tricubic' or 'trilinear'")


# --------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------


@njit(nogil=True, cache=True, fastmath=_FASTMATH)
def _catmull_rom(t):
    """Weights of f(-1), f(0), f(1), f(2) for the value and for d/dt at t in [0, 1).

    Expanded from eq. 24: F(t) = f0 + t (f1 - f-1)/2 + t^2 (2f-1 - 5f0 + 4f1 - f2)/2
    + t^3 (-f-1 + 3f0 - 3f1 + f2)/2, collected per grid value.
    """
    t2 = t * t
    t3 = t2 * t
    w0 = 0.5 * (-t + 2.0 * t2 - t3)
    w1 = 0.5 * (2.0 - 5.0 * t2 + 3.0 * t3)
    w2 = 0.5 * (t + 4.0 * t2 - 3.0 * t3)
    w3 = 0.5 * (t3 - t2)
    d0 = 0.5 * (-1.0 + 4.0 * t - 3.0 * t2)
    d1 = 0.5 * (-10.0 * t + 9.0 * t2)
    d2 = 0.5 * (1.0 + 8.0 * t - 9.0 * t2)
    d3 = 0.5 * (3.0 * t2 - 2.0 * t)
    return w0, w1, w2, w3, d0, d1, d2, d3


@njit(nogil=True, cache=True, fastmath=_FASTMATH)
def tricubic_flat(flat, nx, ny, nz, ux, uy, uz):
    """Tricubic value and gradient at fractional grid index (ux, uy, uz).

    ``flat`` is the C-contiguous map raveled (x fastest), of logical shape (nz, ny, nx).
    Returns ``(value, d/dux, d/duy, d/duz)`` in grid units (multiply by 1/voxel for
    Å^-1); zeros when the 4x4x4 stencil is not inside the grid.
    """
    # Stencil i-1 .. i+2 must lie in 0 .. n-1, i.e. 1 <= u < n-2. Written so NaN fails.
    if not (ux >= 1.0 and ux < nx - 2.0 and uy >= 1.0 and uy < ny - 2.0
            and uz >= 1.0 and uz < nz - 2.0):
        return 0.0, 0.0, 0.0, 0.0
    ix = int(ux)  # u >= 1, so int() is floor()
    iy = int(uy)
    iz = int(uz)
    wx0, wx1, wx2, wx3, dx0, dx1, dx2, dx3 = _catmull_rom(ux - ix)
    wy0, wy1, wy2, wy3, dy0, dy1, dy2, dy3 = _catmull_rom(uy - iy)
    wz0, wz1, wz2, wz3, dz0, dz1, dz2, dz3 = _catmull_rom(uz - iz)
    weight_y = (wy0, wy1, wy2, wy3)
    deriv_y = (dy0, dy1, dy2, dy3)
    weight_z = (wz0, wz1, wz2, wz3)
    deriv_z = (dz0, dz1, dz2, dz3)
    value = 0.0
    d_dx = 0.0
    d_dy = 0.0
    d_dz = 0.0
    corner = ((iz - 1) * ny + (iy - 1)) * nx + (ix - 1)  # flat index of stencil [0, 0, 0]
    for c in range(4):
        # 1-D interpolation along x of the 4 rows of this z-plane (value and d/dx), then
        # along y (value, d/dx, d/dy), then along z (eqs 19-22, one axis at a time).
        plane = 0.0
        plane_dx = 0.0
        plane_dy = 0.0
        for r in range(4):
            o = corner + (c * ny + r) * nx
            f0 = np.float64(flat[o])
            f1 = np.float64(flat[o + 1])
            f2 = np.float64(flat[o + 2])
            f3 = np.float64(flat[o + 3])
            row = wx0 * f0 + wx1 * f1 + wx2 * f2 + wx3 * f3
            row_dx = dx0 * f0 + dx1 * f1 + dx2 * f2 + dx3 * f3
            plane += weight_y[r] * row
            plane_dx += weight_y[r] * row_dx
            plane_dy += deriv_y[r] * row
        value += weight_z[c] * plane
        d_dx += weight_z[c] * plane_dx
        d_dy += weight_z[c] * plane_dy
        d_dz += deriv_z[c] * plane
    return value, d_dx, d_dy, d_dz


@njit(nogil=True, cache=True, fastmath=_FASTMATH)
def trilinear_flat(flat, nx, ny, nz, ux, uy, uz):
    """Trilinear value and gradient at fractional grid index (ux, uy, uz).

    Arguments and result as :func:`tricubic_flat`; zeros when the 2x2x2 cell is not inside
    the grid.
    """
    if not (ux >= 0.0 and ux < nx - 1.0 and uy >= 0.0 and uy < ny - 1.0
            and uz >= 0.0 and uz < nz - 1.0):
        return 0.0, 0.0, 0.0, 0.0
    ix = int(ux)
    iy = int(uy)
    iz = int(uz)
    tx = ux - ix
    ty = uy - iy
    tz = uz - iz
    o = (iz * ny + iy) * nx + ix
    plane = ny * nx
    c000 = np.float64(flat[o])
    c001 = np.float64(flat[o + 1])
    c010 = np.float64(flat[o + nx])
    c011 = np.float64(flat[o + nx + 1])
    c100 = np.float64(flat[o + plane])
    c101 = np.float64(flat[o + plane + 1])
    c110 = np.float64(flat[o + plane + nx])
    c111 = np.float64(flat[o + plane + nx + 1])
    # Interpolate along x first; keep the x-differences for d/dx.
    c00 = c000 + tx * (c001 - c000)
    c01 = c010 + tx * (c011 - c010)
    c10 = c100 + tx * (c101 - c100)
    c11 = c110 + tx * (c111 - c110)
    c0 = c00 + ty * (c01 - c00)
    c1 = c10 + ty * (c11 - c10)
    value = c0 + tz * (c1 - c0)
    e00 = c001 - c000
    e01 = c011 - c010
    e10 = c101 - c100
    e11 = c111 - c110
    e0 = e00 + ty * (e01 - e00)
    e1 = e10 + ty * (e11 - e10)
    d_dx = e0 + tz * (e1 - e0)
    d_dy = (c01 - c00) + tz * ((c11 - c10) - (c01 - c00))
    d_dz = c1 - c0
    return value, d_dx, d_dy, d_dz


@njit(nogil=True, cache=True)
def _interpolate_kernel(data, origin, voxel_size, xyz, method, values):
    nz, ny, nx = data.shape
    flat = data.ravel()
    inv_x = 1.0 / voxel_size[0]
    inv_y = 1.0 / voxel_size[1]
    inv_z = 1.0 / voxel_size[2]
    for i in range(xyz.shape[0]):
        ux = (xyz[i, 0] - origin[0]) * inv_x
        uy = (xyz[i, 1] - origin[1]) * inv_y
        uz = (xyz[i, 2] - origin[2]) * inv_z
        if method == METHOD_TRICUBIC:
            values[i] = tricubic_flat(flat, nx, ny, nz, ux, uy, uz)[0]
        else:
            values[i] = trilinear_flat(flat, nx, ny, nz, ux, uy, uz)[0]


# --------------------------------------------------------------------------------------
# Python wrappers
# --------------------------------------------------------------------------------------


def as_kernel_grid(data: np.ndarray, origin: np.ndarray, voxel_size: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate a grid and return it as the kernels want it.

    ``data`` C-contiguous float32 or float64 (other dtypes become float32), ``origin`` and
    ``voxel_size`` contiguous float64 (3,). Raises ValueError on a bad shape or voxel size.
    """
    data = np.asarray(data)
    if data.ndim != 3:
        raise ValueError(f"map data must be 3-D (nz, ny, nx), got shape {data.shape}")
    data = np.ascontiguousarray(data)
    if data.dtype not in (np.float32, np.float64):
        data = data.astype(np.float32)
    origin = np.ascontiguousarray(origin, dtype=np.float64).reshape(3)
    voxel_size = np.ascontiguousarray(voxel_size, dtype=np.float64).reshape(3)
    if not np.all(voxel_size > 0):
        raise ValueError(f"voxel sizes must be positive, got {voxel_size}")
    return data, origin, voxel_size


def _check_points(xyz: np.ndarray) -> np.ndarray:
    xyz = np.ascontiguousarray(xyz, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {xyz.shape}")
    return xyz


def interpolate(data: np.ndarray, origin: np.ndarray, voxel_size: np.ndarray,
                xyz: np.ndarray, method: str = "tricubic") -> np.ndarray:
    """Map values at Cartesian points.

    Parameters
    ----------
    data : (nz, ny, nx) float32 or float64
        Map values, ``data[iz, iy, ix]``.
    origin, voxel_size : (3,) float64
        Cartesian (x, y, z) of voxel [0, 0, 0] and the voxel spacing, Å.
    xyz : (N, 3) float64
        Cartesian points, Å.
    method : {"tricubic", "trilinear"}

    Returns
    -------
    values : (N,) float64
        Interpolated values; 0 where the stencil leaves the grid (outside = no density).
    """
    data, origin, voxel_size = as_kernel_grid(data, origin, voxel_size)
    xyz = _check_points(xyz)
    values = np.empty(len(xyz), dtype=np.float64)
    _interpolate_kernel(data, origin, voxel_size, xyz, interpolation_method_code(method), values)
    return values
