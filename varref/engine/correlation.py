"""Map-model correlation coefficients as Phenix defines them.

Afonine et al. (2018) Acta Cryst. D74, 814 ("New tools for the analysis and validation of
cryo-EM maps and atomic models"); cctbx ``mmtbx/maps/correlation.py`` (``five_cc``). All are
Pearson correlations between the model map and the target map over a set of grid points:

* **CC_mask**: points inside the molecular mask (:func:`molecular_mask`).
* **CC_box**: every point of the box.
* **CC_volume**: the N highest points of the *model* map, N = number of mask points.
* **CC_peaks**: the union of the N highest points of each map.
* **per-residue / per-chain CC**: points within a radius of the group's atoms.

Molecular mask (CC_mask)
------------------------
As cctbx's bulk-solvent mask used by ``five_cc``: a point is inside if it lies within
``r_vdW + solvent_radius`` (1.1 Å) of an atom and *not* within ``shrink_radius`` (0.9 Å) of
any point that is outside every such sphere. Radii (:func:`mask_radii`): C 1.775, N 1.5,
O 1.45, S 1.8, H 1.2 Å (the cctbx table); other elements use gemmi's van der Waals radius.
For an isolated atom the mask radius is ``r_vdW + 0.2`` Å; in crevices narrower than the
probe the shrink step keeps the points (as cctbx does). Grid points beyond the box edge are
ignored by the shrink step (the box is not treated as periodic).

The model map of Phenix is a resolution-truncated Fourier synthesis; varref's model map is
the Gaussian approximation of :mod:`varref.engine.model_map` (blur ``4 d^2``), so absolute
values differ slightly from Phenix's.

All functions take plain numpy arrays on the varref grid convention (``data[iz, iy, ix]``,
``origin`` and ``voxel_size`` in (x, y, z) Å).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numba import njit

from varref.engine.interpolation import as_kernel_grid
from varref.engine.model_map import grid_index_range

__all__ = [
    "MASK_RADII",
    "SOLVENT_RADIUS",
    "SHRINK_RADIUS",
    "mask_radii",
    "atom_mask",
    "molecular_mask",
    "pearson_cc",
    "cc_mask",
    "cc_box",
    "cc_volume",
    "cc_peaks",
    "map_model_cc",
    "per_group_cc",
    "per_residue_cc",
    "per_chain_cc",
]

#: van der Waals-like radii (Å) of the cctbx bulk-solvent mask.
MASK_RADII = {"C": 1.775, "N": 1.5, "O": 1.45, "S": 1.8, "H": 1.2, "D": 1.2}
#: Solvent probe radius and shrink-truncation radius of the cctbx mask (Å).
SOLVENT_RADIUS = 1.1
SHRINK_RADIUS = 0.9


def mask_radii(elements: Sequence[str]) -> np.ndarray:
    """Per-atom vdW-like mask radii (Å) from element symbols (see :data:`MASK_RADII`)."""
    elements = np.asarray(elements).astype(str)
    unique, inverse = np.unique(elements, return_inverse=True)
    table = np.empty(len(unique), dtype=np.float64)
    for j, symbol in enumerate(unique):
        key = symbol.strip().upper()
        if key in MASK_RADII:
            table[j] = MASK_RADII[key]
        else:
            import gemmi  # fallback for uncommon elements only

            element = gemmi.Element(key)
            if element.atomic_number == 0:
                raise ValueError(f"unknown element symbol {symbol!r}")
            table[j] = element.vdw_r
    return table[inverse.ravel()]


# --------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------


@njit(nogil=True, cache=True)
def _atom_mask_kernel(xyz, radii, origin, voxel_size, mask):
    nz, ny, nx = mask.shape
    for i in range(xyz.shape[0]):
        r = radii[i]
        if not r > 0.0:
            continue
        x = xyz[i, 0]
        y = xyz[i, 1]
        z = xyz[i, 2]
        x_lo, x_hi = grid_index_range(x, r, origin[0], voxel_size[0], nx)
        y_lo, y_hi = grid_index_range(y, r, origin[1], voxel_size[1], ny)
        z_lo, z_hi = grid_index_range(z, r, origin[2], voxel_size[2], nz)
        r2 = r * r
        for iz in range(z_lo, z_hi + 1):
            dz = origin[2] + iz * voxel_size[2] - z
            for iy in range(y_lo, y_hi + 1):
                dy = origin[1] + iy * voxel_size[1] - y
                dyz2 = dz * dz + dy * dy
                if dyz2 > r2:
                    continue
                for ix in range(x_lo, x_hi + 1):
                    dx = origin[0] + ix * voxel_size[0] - x
                    if dyz2 + dx * dx <= r2:
                        mask[iz, iy, ix] = True


@njit(nogil=True, cache=True)
def _shrink_kernel(expanded, offsets, result):
    """result = expanded minus points with an outside (not expanded) neighbour in offsets."""
    nz, ny, nx = expanded.shape
    for iz in range(nz):
        for iy in range(ny):
            for ix in range(nx):
                if not expanded[iz, iy, ix]:
                    result[iz, iy, ix] = False
                    continue
                keep = True
                for o in range(offsets.shape[0]):
                    jz = iz + offsets[o, 0]
                    jy = iy + offsets[o, 1]
                    jx = ix + offsets[o, 2]
                    if 0 <= jz < nz and 0 <= jy < ny and 0 <= jx < nx:
                        if not expanded[jz, jy, jx]:
                            keep = False
                            break
                result[iz, iy, ix] = keep


@njit(nogil=True, cache=True)
def _per_group_cc_kernel(model, target, model_shift, target_shift, origin, voxel_size, xyz,
                         radii, atom_order, group_start, stamp, result):
    """Pearson CC per group over the union of its atoms' spheres.

    Atoms of group g are atom_order[group_start[g]:group_start[g+1]]. ``stamp`` (flat int64
    grid, initialised to -1) marks points already counted for the current group, so a point
    covered by several atoms of a group is counted once. Sums are accumulated around fixed
    shifts (the map means) to limit cancellation in the one-pass formula.
    """
    nz, ny, nx = model.shape
    n_groups = group_start.shape[0] - 1
    for g in range(n_groups):
        n = 0
        s_m = 0.0
        s_t = 0.0
        s_mm = 0.0
        s_tt = 0.0
        s_mt = 0.0
        for a in range(group_start[g], group_start[g + 1]):
            i = atom_order[a]
            r = radii[i]
            if not r > 0.0:
                continue
            x = xyz[i, 0]
            y = xyz[i, 1]
            z = xyz[i, 2]
            x_lo, x_hi = grid_index_range(x, r, origin[0], voxel_size[0], nx)
            y_lo, y_hi = grid_index_range(y, r, origin[1], voxel_size[1], ny)
            z_lo, z_hi = grid_index_range(z, r, origin[2], voxel_size[2], nz)
            r2 = r * r
            for iz in range(z_lo, z_hi + 1):
                dz = origin[2] + iz * voxel_size[2] - z
                for iy in range(y_lo, y_hi + 1):
                    dy = origin[1] + iy * voxel_size[1] - y
                    dyz2 = dz * dz + dy * dy
                    if dyz2 > r2:
                        continue
                    for ix in range(x_lo, x_hi + 1):
                        dx = origin[0] + ix * voxel_size[0] - x
                        if dyz2 + dx * dx > r2:
                            continue
                        flat = (iz * ny + iy) * nx + ix
                        if stamp[flat] == g:
                            continue
                        stamp[flat] = g
                        m = model[iz, iy, ix] - model_shift
                        t = target[iz, iy, ix] - target_shift
                        n += 1
                        s_m += m
                        s_t += t
                        s_mm += m * m
                        s_tt += t * t
                        s_mt += m * t
        if n < 2:
            result[g] = np.nan
            continue
        var_m = s_mm - s_m * s_m / n
        var_t = s_tt - s_t * s_t / n
        if var_m <= 0.0 or var_t <= 0.0:
            result[g] = np.nan
            continue
        result[g] = (s_mt - s_m * s_t / n) / math.sqrt(var_m * var_t)


# --------------------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------------------


def _check_xyz_radii(xyz, radii):
    xyz = np.ascontiguousarray(xyz, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"coordinates must have shape (N, 3), got {xyz.shape}")
    radii = np.ascontiguousarray(np.broadcast_to(np.asarray(radii, dtype=np.float64),
                                                 (xyz.shape[0],)))
    return xyz, radii


def atom_mask(xyz: np.ndarray, radii: np.ndarray | float, shape: tuple[int, int, int],
              origin: np.ndarray, voxel_size: np.ndarray) -> np.ndarray:
    """Grid points within ``radii[i]`` of any atom i.

    Parameters
    ----------
    xyz : (N, 3) float64
    radii : (N,) float64 or float
        Radius per atom, Å (an atom with radius <= 0 marks nothing).
    shape : (nz, ny, nx)
    origin, voxel_size : (3,) float64

    Returns
    -------
    mask : (nz, ny, nx) bool
    """
    xyz, radii = _check_xyz_radii(xyz, radii)
    mask = np.zeros(tuple(int(n) for n in shape), dtype=np.bool_)
    _, origin, voxel_size = as_kernel_grid(np.empty((1, 1, 1), np.float32), origin,
                                           voxel_size)
    _atom_mask_kernel(xyz, radii, origin, voxel_size, mask)
    return mask


def _ball_offsets(radius: float, voxel_size: np.ndarray) -> np.ndarray:
    """Integer (dz, dy, dx) offsets of grid points within ``radius`` Å, excluding 0."""
    reach = np.floor(radius / voxel_size).astype(int)  # (x, y, z)
    dz, dy, dx = np.meshgrid(np.arange(-reach[2], reach[2] + 1),
                             np.arange(-reach[1], reach[1] + 1),
                             np.arange(-reach[0], reach[0] + 1), indexing="ij")
    dist2 = ((dx * voxel_size[0]) ** 2 + (dy * voxel_size[1]) ** 2
             + (dz * voxel_size[2]) ** 2)
    keep = (dist2 <= radius * radius) & (dist2 > 0)
    return np.ascontiguousarray(np.stack([dz[keep], dy[keep], dx[keep]], axis=1),
                                dtype=np.int64)


def molecular_mask(xyz: np.ndarray, radii: np.ndarray | float, shape: tuple[int, int, int],
                   origin: np.ndarray, voxel_size: np.ndarray,
                   solvent_radius: float = SOLVENT_RADIUS,
                   shrink_radius: float = SHRINK_RADIUS) -> np.ndarray:
    """The CC_mask region: cctbx bulk-solvent style mask (see module docstring).

    Parameters
    ----------
    xyz : (N, 3) float64
    radii : (N,) float64 or float
        vdW-like radii (:func:`mask_radii`).
    shape, origin, voxel_size
        Grid.
    solvent_radius, shrink_radius : float
        Probe and shrink radii, Å (cctbx defaults 1.1 and 0.9).

    Returns
    -------
    mask : (nz, ny, nx) bool
    """
    xyz, radii = _check_xyz_radii(xyz, radii)
    expanded = atom_mask(xyz, radii + solvent_radius, shape, origin, voxel_size)
    if shrink_radius <= 0:
        return expanded
    offsets = _ball_offsets(shrink_radius, np.asarray(voxel_size, dtype=np.float64))
    result = np.empty_like(expanded)
    _shrink_kernel(expanded, offsets, result)
    return result


# --------------------------------------------------------------------------------------
# Correlations
# --------------------------------------------------------------------------------------


def pearson_cc(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two equally sized arrays (sums in float64, two passes); NaN if either
    is constant or has fewer than 2 values."""
    # single precision is read as it is (the sums run in double precision either way): a
    # float64 copy of two boxes would cost more than the sums
    x, y = _real_flat(x), _real_flat(y)
    if x.shape != y.shape:
        raise ValueError(f"arrays differ in size: {x.shape} vs {y.shape}")
    if x.size < 2:
        return float("nan")
    s_xx, s_yy, s_xy = _centred_sums(x, y)
    denominator = math.sqrt(s_xx * s_yy)
    if denominator == 0.0:
        return float("nan")
    return s_xy / denominator


def _real_flat(values) -> np.ndarray:
    """``values`` as a flat float32 or float64 array (other types converted to float64)."""
    values = np.asarray(values)
    if values.dtype not in (np.float32, np.float64):
        values = values.astype(np.float64)
    return values.ravel()


@njit(nogil=True, cache=True)
def _centred_sums(x: np.ndarray, y: np.ndarray):
    """S_xx, S_yy, S_xy about the means (two passes, no temporaries; a BLAS dot of a map's
    size would spin extra threads for no gain)."""
    n = x.size
    mean_x = 0.0
    mean_y = 0.0
    for i in range(n):
        mean_x += x[i]
        mean_y += y[i]
    mean_x /= n
    mean_y /= n
    s_xx = 0.0
    s_yy = 0.0
    s_xy = 0.0
    for i in range(n):
        dx = x[i] - mean_x
        dy = y[i] - mean_y
        s_xx += dx * dx
        s_yy += dy * dy
        s_xy += dx * dy
    return s_xx, s_yy, s_xy


def _same_grid(model_map: np.ndarray, target_map: np.ndarray) -> None:
    if model_map.shape != target_map.shape:
        raise ValueError(f"maps differ in shape: {model_map.shape} vs {target_map.shape}")


def cc_mask(model_map: np.ndarray, target_map: np.ndarray, mask: np.ndarray) -> float:
    """CC over the points of a boolean ``mask`` (same shape as the maps)."""
    _same_grid(model_map, target_map)
    mask = np.asarray(mask, dtype=bool)
    _same_grid(model_map, mask)
    return pearson_cc(model_map[mask], target_map[mask])


def cc_box(model_map: np.ndarray, target_map: np.ndarray) -> float:
    """CC over the whole box."""
    _same_grid(model_map, target_map)
    return pearson_cc(model_map, target_map)


#: Points of the strided sample from which :func:`_top_indices` guesses its threshold.
TOP_SAMPLE_POINTS = 65536


def _top_indices(data: np.ndarray, n_points: int) -> np.ndarray:
    """Flat indices, increasing, of the points at or above the (N+1)-th highest value
    (N = ``n_points``): cctbx's ``get_selection_above_cutoff`` behind Phenix's CC_volume
    and CC_peaks — the N highest points and every point equal to the cutoff, so equal
    values (a model map's zero background, a processed map's repeated values) are all in
    or all out."""
    flat = np.asarray(data).ravel()
    rank = max(int(n_points), 0)  # the cutoff's position, highest first
    if rank >= flat.size:
        return np.arange(flat.size)
    # The cutoff is found among the points at or above a threshold a little below it,
    # guessed from a strided sample (N ~ 10 % of a box: 3x faster on 4 M points); among
    # every point when fewer than rank + 1 pass the guess. Every point at or above the
    # cutoff is then among the candidates.
    candidates = None
    sample = flat[::max(1, flat.size // TOP_SAMPLE_POINTS)]
    k = int(sample.size * (1.0 - 1.1 * (rank + 1) / flat.size))
    if 0 < k < sample.size:
        candidates = np.flatnonzero(flat >= np.partition(sample, k)[k])
        if candidates.size <= rank:
            candidates = None
    if candidates is None:
        candidates = np.arange(flat.size)
    values = flat[candidates]
    # the cutoff as the rank-th smallest of -values: numpy's introselect is slow when a
    # large block of tied values (a model map's zero background) lies on the side being
    # partitioned off
    cutoff = -np.partition(-values, rank)[rank]
    return candidates[values >= cutoff]


def cc_volume(model_map: np.ndarray, target_map: np.ndarray, n_points: int) -> float:
    """CC over the ``n_points`` highest points of the model map (Phenix: N = mask size;
    points equal to the (N+1)-th highest value included, as cctbx selects them)."""
    _same_grid(model_map, target_map)
    return _cc_volume(model_map, target_map, _top_indices(model_map, n_points))


def _cc_volume(model_map, target_map, model_top):
    return pearson_cc(model_map.ravel()[model_top], target_map.ravel()[model_top])


def cc_peaks(model_map: np.ndarray, target_map: np.ndarray, n_points: int) -> float:
    """CC over the union of the ``n_points`` highest points of each map (selected as for
    :func:`cc_volume`)."""
    _same_grid(model_map, target_map)
    return _cc_peaks(model_map, target_map, _top_indices(model_map, n_points), n_points)


def _cc_peaks(model_map, target_map, model_top, n_points):
    selected = np.zeros(model_map.size, dtype=bool)
    selected[model_top] = True
    selected[_top_indices(target_map, n_points)] = True
    return pearson_cc(model_map.ravel()[selected], target_map.ravel()[selected])


def map_model_cc(model_map: np.ndarray, target_map: np.ndarray, mask: np.ndarray
                 ) -> dict[str, float]:
    """CC_mask, CC_box, CC_volume and CC_peaks in one call (N = number of mask points).

    Returns
    -------
    dict with keys ``"cc_mask"``, ``"cc_box"``, ``"cc_volume"``, ``"cc_peaks"``.
    """
    mask = np.asarray(mask, dtype=bool)
    n_points = int(mask.sum())
    _same_grid(model_map, target_map)
    model_top = _top_indices(model_map, n_points)  # one selection for CC_volume and CC_peaks
    return {
        "cc_mask": cc_mask(model_map, target_map, mask),
        "cc_box": cc_box(model_map, target_map),
        "cc_volume": _cc_volume(model_map, target_map, model_top),
        "cc_peaks": _cc_peaks(model_map, target_map, model_top, n_points),
    }


def per_group_cc(model_map: np.ndarray, target_map: np.ndarray, origin: np.ndarray,
                 voxel_size: np.ndarray, xyz: np.ndarray, radii: np.ndarray | float,
                 group_index: np.ndarray, n_groups: int | None = None) -> np.ndarray:
    """CC per group of atoms over the grid points within ``radii`` of the group's atoms.

    Parameters
    ----------
    model_map, target_map : (nz, ny, nx)
        Maps on the same grid.
    origin, voxel_size : (3,) float64
    xyz : (N, 3) float64
    radii : (N,) float64 or float
        Sphere radius per atom, Å. Phenix uses a resolution-dependent atom radius; a
        sensible default is ``mask_radii(elements) + SOLVENT_RADIUS - SHRINK_RADIUS``.
    group_index : (N,) int
        Group of each atom, 0..n_groups-1 (e.g. ``Model.residue_index``); negative = none.
    n_groups : int, optional
        Number of groups (default ``group_index.max() + 1``).

    Returns
    -------
    cc : (n_groups,) float64
        NaN for a group with fewer than 2 points or a constant map over its points.
    """
    _same_grid(model_map, target_map)
    model_map, origin, voxel_size = as_kernel_grid(model_map, origin, voxel_size)
    target_map = np.ascontiguousarray(target_map)
    if target_map.dtype not in (np.float32, np.float64):
        target_map = target_map.astype(np.float32)
    xyz, radii = _check_xyz_radii(xyz, radii)
    group_index = np.asarray(group_index, dtype=np.int64)
    if group_index.shape != (xyz.shape[0],):
        raise ValueError("group_index must have one entry per atom")
    if n_groups is None:
        n_groups = int(group_index.max()) + 1 if group_index.size else 0
    in_range = (group_index >= 0) & (group_index < n_groups)
    atoms = np.flatnonzero(in_range)
    atom_order = np.ascontiguousarray(atoms[np.argsort(group_index[atoms], kind="stable")])
    counts = np.bincount(group_index[atoms], minlength=n_groups)
    group_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    stamp = np.full(model_map.size, -1, dtype=np.int64)
    result = np.empty(n_groups, dtype=np.float64)
    _per_group_cc_kernel(model_map, target_map, float(model_map.mean(dtype=np.float64)),
                         float(target_map.mean(dtype=np.float64)), origin, voxel_size, xyz,
                         radii, atom_order, group_start, stamp, result)
    return result


def per_residue_cc(model_map: np.ndarray, target_map: np.ndarray, origin: np.ndarray,
                   voxel_size: np.ndarray, xyz: np.ndarray, radii: np.ndarray | float,
                   residue_index: np.ndarray) -> np.ndarray:
    """One CC per residue (``residue_index`` 0..R-1 per atom); see :func:`per_group_cc`."""
    return per_group_cc(model_map, target_map, origin, voxel_size, xyz, radii, residue_index)


def per_chain_cc(model_map: np.ndarray, target_map: np.ndarray, origin: np.ndarray,
                 voxel_size: np.ndarray, xyz: np.ndarray, radii: np.ndarray | float,
                 chain_id: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One CC per chain.

    Parameters
    ----------
    chain_id : (N,) str or int
        Chain label of each atom.

    Returns
    -------
    chains : (C,) labels in order of first appearance
    cc : (C,) float64
    """
    chain_id = np.asarray(chain_id)
    labels, first, inverse = np.unique(chain_id, return_index=True, return_inverse=True)
    order = np.argsort(first)  # order of first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    cc = per_group_cc(model_map, target_map, origin, voxel_size, xyz, radii,
                      rank[inverse.ravel()], n_groups=len(labels))
    return labels[order], cc
