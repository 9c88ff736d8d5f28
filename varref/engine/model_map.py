"""Model map: atoms summed as Gaussians in real space on a given grid.

Each atom is the isotropic Fourier image of its electron scattering factor, represented by
the 5-Gaussian fit of Peng et al. (1996) Acta Cryst. A52, 257 (``gemmi.Element(sym).c4322``,
``f(s) = sum_k a_k exp(-b_k s^2 / 4)``), damped by the atom's B and by a resolution blur::

    rho(r) = occ * sum_k a_k (4 pi / B_k)^(3/2) exp(-4 pi^2 r^2 / B_k),
    B_k = b_k + B_atom + B_blur.

Resolution blur rule
--------------------
A map at resolution d is approximated by a Gaussian blur ``B_blur = 4 d^2``
(:func:`resolution_blur`): the blur's transform ``exp(-B_blur s^2 / 4)`` falls to 1/e at
``s = 1/d``. In real space this is a Gaussian of sigma ``d / (pi sqrt 2) = 0.225 d``, the
default of UCSF Chimera's ``molmap``. Compared with the sharply truncated Fourier synthesis
that Phenix uses for its model map, the correlation of the two point-spread functions
(carbon, B_atom 20-100 Å^2, d 2-8 Å) is within 0.03 of the best single-Gaussian blur.

Truncation
----------
Each atom is summed within the radius R where the bound
``sum_k A_k exp(-c_k r^2) <= rho(0) exp(-c_min r^2)`` drops below ``cutoff * rho(0)``
(``cutoff`` is relative to the atom's peak, default 1e-5), and the atom's own value at R is
subtracted inside the sphere, so each atom's density goes continuously to zero at R: the
model map, and any target built on it, is continuous in the coordinates (important for
finite differences and for line searches).

Everything runs in numba kernels (``nogil``); gemmi is used only in
:func:`scattering_coefficients` to fetch the tables.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numba import njit

from varref.engine.interpolation import as_kernel_grid
from varref.engine.parallel import atom_parts, run_parts, slab_parts

__all__ = [
    "BLUR_PER_RESOLUTION_SQUARED",
    "CORRELATION_CUTOFF",
    "resolution_blur",
    "scattering_coefficients",
    "merged_coefficients",
    "MERGE_TOLERANCE",
    "atom_gaussians",
    "cutoff_radii",
    "model_map",
    "add_model_density",
    "coordinate_gradient_from_map_gradient",
    "grid_index_range",
]

#: ``B_blur = BLUR_PER_RESOLUTION_SQUARED * d**2`` (see the module docstring).
BLUR_PER_RESOLUTION_SQUARED = 4.0
#: Truncation of the correlation targets (final CC stage, B refinement). A correlation does
#: not see the few % of each atom's integral that the cut removes (nearly a uniform scale):
#: on a 4,505-atom model at 3 Å (0.75 Å grid) the map correlates with the 1e-5 map at
#: 0.99999 at 3e-3 (0.9999988 at 1e-3, 0.9999 at 1e-2), and the kernels run 1.25x faster
#: than at 1e-3 (2x faster than at 1e-5). Maps that are reported or simulated keep 1e-5.
CORRELATION_CUTOFF = 3e-3

#: Largest relative L2 error of an atom's real-space profile accepted when its five
#: Gaussians are merged for a correlation target (:func:`merged_coefficients`). 2 % of the
#: profile's norm costs under 1e-4 in the correlation of one atom's profiles.
MERGE_TOLERANCE = 0.02

_FOUR_PI = 4.0 * math.pi
_FOUR_PI_SQ = 4.0 * math.pi**2


def resolution_blur(resolution: float) -> float:
    """Extra isotropic B (Å^2) that makes a point-atom map look like resolution ``d``.

    ``B_blur = 4 d^2``: the Gaussian transform ``exp(-B s^2/4)`` equals 1/e at ``s = 1/d``
    (real-space sigma ``0.225 d``, as Chimera's molmap).
    """
    if not resolution > 0:
        raise ValueError(f"resolution must be positive, got {resolution}")
    return BLUR_PER_RESOLUTION_SQUARED * float(resolution) ** 2


def scattering_coefficients(elements: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Electron scattering-factor coefficients (Peng et al. 1996) per atom.

    Parameters
    ----------
    elements : sequence of str, length N
        Element symbols (any case; ``"D"`` is deuterium).

    Returns
    -------
    coeff_a : (N, 5) float64
        Amplitudes a_k (Å).
    coeff_b : (N, 5) float64
        Widths b_k (Å^2), for ``f(s) = sum a_k exp(-b_k s^2/4)``, s = 2 sin(theta)/lambda.
    """
    import gemmi  # thin wrapper only; the kernels never see gemmi objects

    elements = np.asarray(elements).astype(str)
    unique, inverse = np.unique(elements, return_inverse=True)
    table_a = np.empty((len(unique), 5), dtype=np.float64)
    table_b = np.empty((len(unique), 5), dtype=np.float64)
    for j, symbol in enumerate(unique):
        element = gemmi.Element(symbol.strip())
        if element.atomic_number == 0:
            raise ValueError(f"unknown element symbol {symbol!r}")
        coefficients = element.c4322
        table_a[j] = coefficients.a
        table_b[j] = coefficients.b
    return table_a[inverse.ravel()], table_b[inverse.ravel()]


def _profile_products(b_1: np.ndarray, b_2: np.ndarray) -> np.ndarray:
    """Inner products of real-space Gaussians of unit integral: for ``g_B(r) = (4 pi / B)^(3/2)
    exp(-4 pi^2 r^2 / B)``, ``<g_B1, g_B2> = (4 pi / (B1 + B2))^(3/2)`` (their convolution at 0)."""
    return (_FOUR_PI / (b_1[:, None] + b_2[None, :])) ** 1.5


def _merge_error(a: np.ndarray, b: np.ndarray, groups: list[np.ndarray], extra_b: float
                 ) -> tuple[float, np.ndarray, np.ndarray]:
    """Relative L2 error of the profile when the Gaussians of each group are merged into one
    with the group's integral and second moment, and the merged coefficients."""
    merged_a = np.array([a[g].sum() for g in groups])
    merged_b = np.array([np.dot(a[g], b[g]) / a[g].sum() for g in groups])
    full_b, part_b = b + extra_b, merged_b + extra_b
    norm = a @ _profile_products(full_b, full_b) @ a
    cross = a @ _profile_products(full_b, part_b) @ merged_a
    part = merged_a @ _profile_products(part_b, part_b) @ merged_a
    return math.sqrt(max(norm - 2.0 * cross + part, 0.0) / norm), merged_a, merged_b


def merged_coefficients(coeff_a: np.ndarray, coeff_b: np.ndarray, extra_b: float,
                        tolerance: float = MERGE_TOLERANCE) -> tuple[np.ndarray, np.ndarray]:
    """Fewer Gaussians per atom, for targets that run the model map many times.

    Once an atom is blurred by its B and the resolution, its five Gaussians have similar
    widths (carbon at B 20 Å², 3 Å: ``b_k + B + B_blur`` from 56 to 106 Å²) and a mixture of
    two or three describes it to within a few parts per thousand. Gaussians adjacent in
    width are merged into one with the same integral and second moment (``a = sum a_k``,
    ``b = sum a_k b_k / a``); per element the grouping with the smallest L2 error of the
    real-space profile is kept, and the number of groups is the smallest for which every
    element is within ``tolerance`` (relative L2 error, computed in closed form) at the
    narrowest width used, ``b_k + extra_b``. Wider atoms are approximated better, so
    ``extra_b`` should be the smallest ``B + B_blur`` the target will see.

    The kernels' cost per grid point is proportional to the number of Gaussians.

    Parameters
    ----------
    coeff_a, coeff_b : (N, G) float64
        Scattering-factor coefficients (:func:`scattering_coefficients`).
    extra_b : float
        Smallest ``B_atom + B_blur`` (Å^2) the merged coefficients must serve.
    tolerance : float
        Largest relative L2 error of any atom's profile.

    Returns
    -------
    coeff_a, coeff_b : (N, G') float64 with G' <= G
        Merged coefficients, used as the originals (:func:`atom_gaussians`).
    """
    from itertools import combinations

    coeff_a = np.asarray(coeff_a, dtype=np.float64)
    coeff_b = np.asarray(coeff_b, dtype=np.float64)
    n_atoms, n_gauss = coeff_a.shape
    if n_atoms == 0 or n_gauss <= 1:
        return coeff_a.copy(), coeff_b.copy()
    if not np.all(coeff_b + extra_b > 0):
        raise ValueError("b_k + extra_b must be positive for every Gaussian")
    rows, inverse = np.unique(np.hstack([coeff_a, coeff_b]), axis=0, return_inverse=True)
    inverse = inverse.ravel()
    for n_groups in range(1, n_gauss + 1):
        best = []
        for row in rows:
            a, b = row[:n_gauss], row[n_gauss:]
            order = np.argsort(b)
            a, b = a[order], b[order]
            options = []
            for cuts in combinations(range(1, n_gauss), n_groups - 1):
                edges = (0, *cuts, n_gauss)
                groups = [np.arange(edges[j], edges[j + 1]) for j in range(n_groups)]
                options.append(_merge_error(a, b, groups, extra_b))
            best.append(min(options, key=lambda option: option[0]))
        if max(error for error, _, _ in best) <= tolerance or n_groups == n_gauss:
            merged_a = np.array([m_a for _, m_a, _ in best])[inverse]
            merged_b = np.array([m_b for _, _, m_b in best])[inverse]
            return np.ascontiguousarray(merged_a), np.ascontiguousarray(merged_b)
    raise AssertionError("unreachable")


def atom_gaussians(coeff_a: np.ndarray, coeff_b: np.ndarray, b_iso: np.ndarray | float,
                   occupancy: np.ndarray | None = None, blur: float = 0.0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Real-space Gaussian parameters ``rho(r) = sum_k A_k exp(-c_k r^2)`` per atom.

    Parameters
    ----------
    coeff_a, coeff_b : (N, G) float64
        Scattering-factor coefficients (:func:`scattering_coefficients`).
    b_iso : (N,) float64 or float
        Isotropic B per atom, Å^2.
    occupancy : (N,) float64, optional
        Scales each atom (default 1).
    blur : float
        Extra B added to every atom, Å^2 (:func:`resolution_blur`).

    Returns
    -------
    amplitude : (N, G) float64
        ``A_k = occ a_k (4 pi / B_k)^(3/2)``.
    exponent : (N, G) float64
        ``c_k = 4 pi^2 / B_k`` (Å^-2), ``B_k = b_k + b_iso + blur``.
    """
    coeff_a = np.asarray(coeff_a, dtype=np.float64)
    coeff_b = np.asarray(coeff_b, dtype=np.float64)
    n_atoms = coeff_a.shape[0]
    b_iso = np.broadcast_to(np.asarray(b_iso, dtype=np.float64), (n_atoms,))
    total_b = coeff_b + b_iso[:, None] + float(blur)
    if not np.all(total_b > 0):
        raise ValueError("b_k + B_iso + blur must be positive for every atom and Gaussian")
    amplitude = coeff_a * (_FOUR_PI / total_b) ** 1.5
    if occupancy is not None:
        amplitude = amplitude * np.asarray(occupancy, dtype=np.float64)[:, None]
    exponent = _FOUR_PI_SQ / total_b
    return np.ascontiguousarray(amplitude), np.ascontiguousarray(exponent)


def cutoff_radii(exponent: np.ndarray, cutoff: float = 1e-5) -> np.ndarray:
    """Per-atom summation radius R (Å): the peak-relative bound falls to ``cutoff``.

    ``R^2 = ln(1 / cutoff) / min_k c_k``, since every Gaussian term decays at least as fast
    as the widest one.
    """
    if not 0 < cutoff < 1:
        raise ValueError(f"cutoff must be in (0, 1), got {cutoff}")
    return np.sqrt(math.log(1.0 / cutoff) / np.min(exponent, axis=1))


# --------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------


@njit(nogil=True, cache=True)
def grid_index_range(centre, radius, origin, voxel, n):
    """Index range [lo, hi] of grid points within centre +- radius along one axis.

    Clamped in floating point first so huge or NaN coordinates can never overflow int().
    Returns lo > hi for an empty range.
    """
    lo = np.ceil((centre - radius - origin) / voxel)
    hi = np.floor((centre + radius - origin) / voxel)
    if not (lo <= n - 1.0 and hi >= 0.0):  # also catches NaN
        return 1, 0
    if lo < 0.0:
        lo = 0.0
    if hi > n - 1.0:
        hi = n - 1.0
    return int(lo), int(hi)


@njit(nogil=True, cache=True)
def _max_extent(radius, voxel_size):
    """Largest number of grid points any atom's box spans along any axis."""
    r_max = 0.0
    for i in range(radius.shape[0]):
        if radius[i] > r_max:
            r_max = radius[i]
    v_min = min(voxel_size[0], min(voxel_size[1], voxel_size[2]))
    return int(2.0 * r_max / v_min) + 2


@njit(nogil=True, cache=True)
def _axis_gaussians(centre, origin, voxel, lo, hi, exponent_row, table, delta):
    """table[j, k] = exp(-c_k d_j^2), delta[j] = d_j for grid points lo..hi on one axis.

    By recurrence outward from the point nearest the centre (``exp(-c (d + v)^2) =
    exp(-c d^2) exp(-c (2 d v + v^2))``, the ratio itself shrinking by ``exp(-2 c v^2)`` per
    step): three exp() per Gaussian instead of one per point. Every ratio is <= 1, so a value
    can only underflow where it is negligible, and each value depends on the centre and its
    own index only, not on ``lo`` or ``hi`` (a slab sees the same numbers as the whole grid)
    as long as the nearest point is inside the range.
    """
    n = hi - lo + 1
    for j in range(n):
        delta[j] = origin + (lo + j) * voxel - centre
    m = int(min(max(math.floor((centre - origin) / voxel + 0.5) - lo, 0.0), n - 1.0))
    d = delta[m]
    for k in range(exponent_row.shape[0]):
        c = exponent_row[k]
        shrink = math.exp(-2.0 * c * voxel * voxel)
        peak = math.exp(-c * d * d)
        table[m, k] = peak
        value = peak
        ratio = math.exp(-c * (2.0 * d * voxel + voxel * voxel))
        for j in range(m + 1, n):
            value *= ratio
            table[j, k] = value
            ratio *= shrink
        value = peak
        ratio = math.exp(-c * (voxel * voxel - 2.0 * d * voxel))
        for j in range(m - 1, -1, -1):
            value *= ratio
            table[j, k] = value
            ratio *= shrink


@njit(nogil=True, cache=True)
def _row_span(square_x, n, left):
    """First and last of the n points of a row with ``square_x[j] <= left`` (the row's part
    inside the atom's sphere; squared distances fall then rise along the row), lo > hi if
    none."""
    lo = 0
    while lo < n and square_x[lo] > left:
        lo += 1
    hi = n - 1
    while hi >= lo and square_x[hi] > left:
        hi -= 1
    return lo, hi


#: The inner loops are written out for up to this many Gaussians (merged coefficients have
#: 1-3): tables and prefactors are zero-padded to it, so the compiler keeps the terms in
#: registers. The model map also has a written-out loop for the unmerged five
#: (:data:`UNROLLED_FULL`, reported and simulated maps); more take a generic loop.
UNROLLED_GAUSSIANS = 3
UNROLLED_FULL = 5


@njit(nogil=True, cache=True)
def _gaussian_tables(extent, n_gauss):
    """Per-axis tables (extent, width) zero-padded to the unrolled width (3 for up to three
    Gaussians, 5 for four or five), their deltas, squared x deltas and prefactors."""
    width = UNROLLED_GAUSSIANS if n_gauss <= UNROLLED_GAUSSIANS else max(n_gauss, UNROLLED_FULL)
    return (np.zeros((extent, width)), np.zeros((extent, width)), np.zeros((extent, width)),
            np.empty(extent), np.empty(extent), np.empty(extent), np.empty(extent),
            np.zeros(width))


@njit(nogil=True, cache=True)
def _add_model_density_kernel(xyz, amplitude, exponent, radius, origin, voxel_size, out,
                              z_first, z_last):
    """Add every atom's density to the grid planes z_first..z_last of ``out`` (a slab, so
    that threads can fill disjoint slabs; each point still sums the atoms in their order)."""
    nz, ny, nx = out.shape
    flat = out.reshape(-1)
    n_gauss = amplitude.shape[1]
    extent = _max_extent(radius, voxel_size)
    # Separable Gaussians: exp(-c r^2) = exp(-c dx^2) exp(-c dy^2) exp(-c dz^2), so the
    # inner loop is n_gauss multiply-adds per grid point and no exp().
    table_x, table_y, table_z, delta_x, delta_y, delta_z, square_x, prefactor = \
        _gaussian_tables(extent, n_gauss)
    for i in range(xyz.shape[0]):
        r = radius[i]
        if not r > 0.0:
            continue
        x = xyz[i, 0]
        y = xyz[i, 1]
        z = xyz[i, 2]
        z_lo, z_hi = grid_index_range(z, r, origin[2], voxel_size[2], nz)
        if max(z_lo, z_first) > min(z_hi, z_last):
            continue
        x_lo, x_hi = grid_index_range(x, r, origin[0], voxel_size[0], nx)
        y_lo, y_hi = grid_index_range(y, r, origin[1], voxel_size[1], ny)
        if x_lo > x_hi or y_lo > y_hi:
            continue
        _axis_gaussians(x, origin[0], voxel_size[0], x_lo, x_hi, exponent[i], table_x, delta_x)
        _axis_gaussians(y, origin[1], voxel_size[1], y_lo, y_hi, exponent[i], table_y, delta_y)
        # the z table over the atom's whole range, so a slab sees the whole grid's numbers
        _axis_gaussians(z, origin[2], voxel_size[2], z_lo, z_hi, exponent[i], table_z, delta_z)
        n_x = x_hi - x_lo + 1
        for jx in range(n_x):
            square_x[jx] = delta_x[jx] * delta_x[jx]
        r2 = r * r
        # The atom's density at R, subtracted so it reaches 0 continuously at R.
        rho_at_r = 0.0
        for k in range(n_gauss):
            rho_at_r += amplitude[i, k] * math.exp(-exponent[i, k] * r2)
        for jz in range(max(z_lo, z_first) - z_lo, min(z_hi, z_last) - z_lo + 1):
            dz2 = delta_z[jz] * delta_z[jz]
            for jy in range(y_hi - y_lo + 1):
                dyz2 = dz2 + delta_y[jy] * delta_y[jy]
                if dyz2 > r2:
                    continue
                jx_lo, jx_hi = _row_span(square_x, n_x, r2 - dyz2)
                start = ((z_lo + jz) * ny + y_lo + jy) * nx + x_lo
                if n_gauss <= UNROLLED_GAUSSIANS:
                    p0 = amplitude[i, 0] * table_z[jz, 0] * table_y[jy, 0]
                    p1 = amplitude[i, 1] * table_z[jz, 1] * table_y[jy, 1] if n_gauss > 1 else 0.0
                    p2 = amplitude[i, 2] * table_z[jz, 2] * table_y[jy, 2] if n_gauss > 2 else 0.0
                    for jx in range(jx_lo, jx_hi + 1):
                        flat[start + jx] += (p0 * table_x[jx, 0] + p1 * table_x[jx, 1]
                                             + p2 * table_x[jx, 2] - rho_at_r)
                elif n_gauss <= UNROLLED_FULL:
                    for k in range(n_gauss):
                        prefactor[k] = amplitude[i, k] * table_z[jz, k] * table_y[jy, k]
                    p0, p1, p2, p3, p4 = (prefactor[0], prefactor[1], prefactor[2], prefactor[3],
                                          prefactor[4])
                    for jx in range(jx_lo, jx_hi + 1):
                        flat[start + jx] += (p0 * table_x[jx, 0] + p1 * table_x[jx, 1]
                                             + p2 * table_x[jx, 2] + p3 * table_x[jx, 3]
                                             + p4 * table_x[jx, 4] - rho_at_r)
                else:
                    for k in range(n_gauss):
                        prefactor[k] = amplitude[i, k] * table_z[jz, k] * table_y[jy, k]
                    for jx in range(jx_lo, jx_hi + 1):
                        value = 0.0
                        for k in range(n_gauss):
                            value += prefactor[k] * table_x[jx, k]
                        flat[start + jx] += value - rho_at_r


@njit(nogil=True, cache=True)
def _coordinate_gradient_kernel(xyz, amplitude, exponent, radius, origin, voxel_size,
                                map_gradient, gradient):
    """gradient[i] = sum_g map_gradient[g] d rho_i(g) / d x_i over atom i's sphere.

    d rho_i(g)/d x_i = sum_k A_k exp(-c_k |g - x_i|^2) 2 c_k (g - x_i); the subtracted
    rho_i(R) does not depend on x_i.
    """
    nz, ny, nx = map_gradient.shape
    flat = map_gradient.reshape(-1)
    n_gauss = amplitude.shape[1]
    extent = _max_extent(radius, voxel_size)
    table_x, table_y, table_z, delta_x, delta_y, delta_z, square_x, prefactor = \
        _gaussian_tables(extent, n_gauss)
    for i in range(xyz.shape[0]):
        gradient[i, 0] = 0.0
        gradient[i, 1] = 0.0
        gradient[i, 2] = 0.0
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
        gx = 0.0
        gy = 0.0
        gz = 0.0
        for jz in range(z_hi - z_lo + 1):
            dz = delta_z[jz]
            for jy in range(y_hi - y_lo + 1):
                dy = delta_y[jy]
                dyz2 = dz * dz + dy * dy
                if dyz2 > r2:
                    continue
                jx_lo, jx_hi = _row_span(square_x, n_x, r2 - dyz2)
                start = ((z_lo + jz) * ny + y_lo + jy) * nx + x_lo
                row_sum = 0.0
                row_sum_dx = 0.0
                if n_gauss <= UNROLLED_GAUSSIANS:
                    p0 = amplitude[i, 0] * exponent[i, 0] * table_z[jz, 0] * table_y[jy, 0]
                    p1 = (amplitude[i, 1] * exponent[i, 1] * table_z[jz, 1] * table_y[jy, 1]
                          if n_gauss > 1 else 0.0)
                    p2 = (amplitude[i, 2] * exponent[i, 2] * table_z[jz, 2] * table_y[jy, 2]
                          if n_gauss > 2 else 0.0)
                    # no test for zero weights here: a branch per point costs more than
                    # the three multiply-adds it would skip
                    for jx in range(jx_lo, jx_hi + 1):
                        s = flat[start + jx] * (p0 * table_x[jx, 0] + p1 * table_x[jx, 1]
                                                + p2 * table_x[jx, 2])
                        row_sum += s
                        row_sum_dx += s * delta_x[jx]
                else:
                    for k in range(n_gauss):
                        prefactor[k] = (amplitude[i, k] * exponent[i, k]
                                        * table_z[jz, k] * table_y[jy, k])
                    for jx in range(jx_lo, jx_hi + 1):
                        weight = flat[start + jx]
                        if weight != 0.0:
                            s = 0.0
                            for k in range(n_gauss):
                                s += prefactor[k] * table_x[jx, k]
                            s *= weight
                            row_sum += s
                            row_sum_dx += s * delta_x[jx]
                gx += row_sum_dx
                gy += row_sum * dy
                gz += row_sum * dz
        gradient[i, 0] = 2.0 * gx
        gradient[i, 1] = 2.0 * gy
        gradient[i, 2] = 2.0 * gz


# --------------------------------------------------------------------------------------
# Python wrappers
# --------------------------------------------------------------------------------------


def _check_atoms(xyz, amplitude, exponent, radius):
    xyz = np.ascontiguousarray(xyz, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"coordinates must have shape (N, 3), got {xyz.shape}")
    amplitude = np.ascontiguousarray(amplitude, dtype=np.float64)
    exponent = np.ascontiguousarray(exponent, dtype=np.float64)
    radius = np.ascontiguousarray(radius, dtype=np.float64)
    n = xyz.shape[0]
    if amplitude.shape[0] != n or exponent.shape != amplitude.shape or radius.shape != (n,):
        raise ValueError("amplitude/exponent (N, G) and radius (N,) must match xyz (N, 3)")
    return xyz, amplitude, exponent, radius


def add_model_density(out: np.ndarray, origin: np.ndarray, voxel_size: np.ndarray,
                      xyz: np.ndarray, amplitude: np.ndarray, exponent: np.ndarray,
                      radius: np.ndarray, zero: bool = False) -> np.ndarray:
    """Add the atoms' Gaussian densities to ``out`` in place (low-level entry point).

    Parameters
    ----------
    out : (nz, ny, nx) float32 or float64, C-contiguous
        Grid to add to.
    origin, voxel_size : (3,) float64
    xyz : (N, 3) float64
    amplitude, exponent : (N, G) float64
        From :func:`atom_gaussians`.
    radius : (N,) float64
        Summation radii from :func:`cutoff_radii`; an atom with radius 0 is skipped.
    zero : bool
        Set ``out`` to the model map instead of adding to it (each thread zeroes its slab).

    Returns
    -------
    out : the same array.
    """
    if out.ndim != 3 or not out.flags.c_contiguous or out.dtype not in (np.float32,
                                                                        np.float64):
        raise ValueError("out must be a C-contiguous 3-D float32/float64 array")
    _, origin, voxel_size = as_kernel_grid(out, origin, voxel_size)
    xyz, amplitude, exponent, radius = _check_atoms(xyz, amplitude, exponent, radius)
    # a scatter: each thread fills its own slab of z planes with every atom that reaches it
    # (module parallel), so every point sums the same atoms in the same order as one thread
    def add_slab(first, stop, j):
        if zero:
            out[first:stop] = 0.0
        _add_model_density_kernel(xyz, amplitude, exponent, radius, origin, voxel_size, out,
                                  first, stop - 1)

    run_parts(add_slab, slab_parts(xyz[:, 2], radius, origin[2], voxel_size[2], out.shape[0]))
    return out


def gather_over_atoms(kernel, xyz, amplitude, exponent, radius, origin, voxel_size,
                      map_gradient, gradient):
    """A per-atom gather kernel (``kernel(xyz, amplitude, exponent, radius, origin, voxel_size,
    map_gradient, gradient)``, each atom writing only its own row of ``gradient``) over atom
    ranges in threads; arguments already checked and contiguous, ``gradient`` written in place."""
    def gradient_part(lo, hi, j):
        kernel(xyz[lo:hi], amplitude[lo:hi], exponent[lo:hi], radius[lo:hi], origin, voxel_size,
               map_gradient, gradient[lo:hi])

    run_parts(gradient_part, atom_parts(radius))


def coordinate_gradient_parts(xyz, amplitude, exponent, radius, origin, voxel_size,
                              map_gradient, gradient):
    """``_coordinate_gradient_kernel`` over atom ranges in threads (:func:`gather_over_atoms`)."""
    gather_over_atoms(_coordinate_gradient_kernel, xyz, amplitude, exponent, radius, origin,
                      voxel_size, map_gradient, gradient)


def model_map(xyz: np.ndarray, shape: tuple[int, int, int], origin: np.ndarray,
              voxel_size: np.ndarray, coeff_a: np.ndarray, coeff_b: np.ndarray,
              b_iso: np.ndarray | float, occupancy: np.ndarray | None = None,
              blur: float = 0.0, cutoff: float = 1e-5, dtype=np.float32) -> np.ndarray:
    """Model map of the atoms on a grid.

    Parameters
    ----------
    xyz : (N, 3) float64
        Coordinates, Å.
    shape : (nz, ny, nx)
        Grid shape.
    origin, voxel_size : (3,) float64
        Cartesian (x, y, z) of voxel [0, 0, 0] and voxel spacing, Å.
    coeff_a, coeff_b : (N, 5) float64
        From :func:`scattering_coefficients`.
    b_iso : (N,) float64 or float
        Isotropic B per atom, Å^2.
    occupancy : (N,) float64, optional
    blur : float
        Extra B for all atoms, e.g. ``resolution_blur(d)``.
    cutoff : float
        Peak-relative truncation level (see module docstring).
    dtype : float32 (default, the map convention) or float64.

    Returns
    -------
    (nz, ny, nx) array of density (electron-scattering units, Å^-2).
    """
    amplitude, exponent = atom_gaussians(coeff_a, coeff_b, b_iso, occupancy, blur)
    radius = cutoff_radii(exponent, cutoff)
    out = np.zeros(tuple(int(n) for n in shape), dtype=dtype)
    return add_model_density(out, origin, voxel_size, xyz, amplitude, exponent, radius)


def coordinate_gradient_from_map_gradient(map_gradient: np.ndarray, origin: np.ndarray,
                                          voxel_size: np.ndarray, xyz: np.ndarray,
                                          amplitude: np.ndarray, exponent: np.ndarray,
                                          radius: np.ndarray) -> np.ndarray:
    """Chain rule through the model map: dT/dx_i = sum_g dT/drho(g) d rho(g)/d x_i.

    Parameters
    ----------
    map_gradient : (nz, ny, nx) float64
        dT/drho_model at every grid point (zero where T does not depend on the point; those
        points are skipped).
    origin, voxel_size, xyz, amplitude, exponent, radius
        As in :func:`add_model_density` (the same values used to build the model map).

    Returns
    -------
    gradient : (N, 3) float64
    """
    map_gradient, origin, voxel_size = as_kernel_grid(map_gradient, origin, voxel_size)
    xyz, amplitude, exponent, radius = _check_atoms(xyz, amplitude, exponent, radius)
    gradient = np.empty(xyz.shape, dtype=np.float64)
    coordinate_gradient_parts(xyz, amplitude, exponent, radius, origin, voxel_size,
                              map_gradient, gradient)
    return gradient
