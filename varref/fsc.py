"""Fourier shell correlation: map–model FSC, half maps and cross-validation.

Definitions, shells, masks and thresholds are explained in ``docs/methods-fsc.md``. In short:

* ``FSC(s) = Re Σ F_a F_b* / sqrt(Σ |F_a|² Σ |F_b|²)`` over the Fourier coefficients of a
  shell of spatial frequency ``s = 1/d`` (numpy ``rfftn``; each stored coefficient of the
  half transform stands for itself and its Friedel mate, so sums and counts are over the full
  sphere).
* Shells are centred on ``k · Δs`` (k = 1 … n_bins, the DC term is left out); the default
  width ``Δs`` is the coarsest reciprocal-lattice spacing of the box, ``1 / min(n_i v_i)``,
  so that no shell is empty, and the shells reach the Nyquist frequency of the coarsest axis.
* The model map is computed with the atoms' own B and no resolution blur (as servalcat
  does), band-limited to the grid without aliasing (:func:`band_limited_model_map`).
* The model mask is every atom's vdW-like radius plus a margin, with a raised-cosine edge
  (:func:`model_mask`); with a mask, each map has its weighted mean inside the mask removed
  before masking, so the FSC does not depend on an arbitrary additive offset of the map.
* Summary numbers: FSC-average ``Σ N_s FSC_s / Σ N_s`` over the shells up to the resolution
  (Brown et al. 2015), and the resolution where a curve first falls below 0.5 (model–map)
  or 0.143 (half maps; Rosenthal & Henderson 2003).

Examples
--------
>>> import varref
>>> from varref.fsc import fsc, model_map_fsc, fsc_summary
>>> model = varref.example_helix(10)
>>> density = varref.simulate_map(model, 3.0, snr=5.0, seed=1)
>>> curve = fsc(density, density)
>>> bool((curve["fsc"] > 0.999).all())
True
>>> summary = fsc_summary(model_map_fsc(model, model.xyz, density, 3.0))
>>> 0.0 < summary["fsc_average_model"] <= 1.0
True
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, replace
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.fft

from varref.atomic import atomic_path
from varref.engine.parallel import available
from varref.errors import InputError
from varref.maps import Map, read_map
from varref.model import Model

if TYPE_CHECKING:  # xarray is imported where a Dataset is built: `varref refine` needs only
    import xarray as xr  # the summary numbers (numpy), and xarray costs ~0.5 s to import

__all__ = [
    "MODEL_MAP_THRESHOLD",
    "HALF_MAP_THRESHOLD",
    "require_same_grid",
    "fsc",
    "fsc_average",
    "crossing_resolution",
    "full_map_fsc",
    "model_mask",
    "band_limited_model_map",
    "model_map_fsc",
    "model_map_fsc_summary",
    "fsc_summary",
    "read_half_maps",
    "average_map",
    "CrossValidation",
    "cross_validate",
    "write_fsc",
    "plot_fsc",
]

#: FSC threshold for model–map curves: a model map has no noise, so this is the counterpart
#: of 0.143 for half maps, sqrt(2·0.143 / 1.143) = 0.5 (Rosenthal & Henderson's C_ref).
MODEL_MAP_THRESHOLD = 0.5
#: FSC threshold for half-map curves (Rosenthal & Henderson 2003).
HALF_MAP_THRESHOLD = 0.143

#: Default margin (Å) added to each atom's vdW-like radius in :func:`model_mask`: with the
#: ~1.5-1.8 Å radii this is ~3 Å from the atom centres, servalcat's default mask radius.
MASK_MARGIN = 1.5
#: Default width (Å) of the raised-cosine edge of :func:`model_mask`.
MASK_SOFT_EDGE = 3.0

# variable name -> legend label of the curves model_map_fsc may hold
CURVE_LABELS = {
    "fsc": "FSC",
    "fsc_model": "model vs map",
    "fsc_model_half1": "model vs half 1 (work)",
    "fsc_model_half2": "model vs half 2 (free)",
    "fsc_half": "half 1 vs half 2",
    "fsc_full_estimate": "full map, 2F/(1+F)",
    "fsc_ref": "FSC_ref = sqrt(2F/(1+F))",
}


# --------------------------------------------------------------------------- grids


def require_same_grid(map_a: Map, map_b: Map) -> None:
    """Raise :class:`InputError`, naming ``map_b``'s file, unless both maps share a grid.

    Same shape, voxel size (relative 1e-4) and origin (within 1 % of a voxel), orthogonal.

    Examples
    --------
    >>> import numpy as np
    >>> from varref.maps import Map
    >>> a = Map(np.zeros((4, 4, 4)), [0, 0, 0], [1, 1, 1], [90, 90, 90], source="a.mrc")
    >>> b = Map(np.zeros((4, 4, 5)), [0, 0, 0], [1, 1, 1], [90, 90, 90], source="b.mrc")
    >>> require_same_grid(a, b)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    varref.errors.InputError: b.mrc: grid (nx, ny, nz) = (5, 4, 4) differs from a.mrc's (4, 4, 4); ...
    """
    name_a = map_a.source or "the first map"
    name_b = map_b.source or "the second map"
    map_a.require_orthogonal()
    map_b.require_orthogonal()
    hint = "the maps must be on the same grid (e.g. two half maps of one reconstruction)"
    if map_a.data.shape != map_b.data.shape:
        raise InputError(name_b, f"grid (nx, ny, nz) = {map_b.shape_xyz} differs from "
                         f"{name_a}'s {map_a.shape_xyz}; {hint}")
    if not np.allclose(map_a.voxel_size, map_b.voxel_size, rtol=1e-4, atol=0.0):
        raise InputError(name_b, f"voxel size {np.round(map_b.voxel_size, 4).tolist()} Å differs "
                         f"from {name_a}'s {np.round(map_a.voxel_size, 4).tolist()} Å; {hint}")
    if np.any(np.abs(map_a.origin - map_b.origin) > 0.01 * map_a.voxel_size):
        raise InputError(name_b, f"origin {np.round(map_b.origin, 3).tolist()} Å differs from "
                         f"{name_a}'s {np.round(map_a.origin, 3).tolist()} Å; {hint}")


@dataclass(frozen=True)
class _Shells:
    """Shell index and Friedel weight of every coefficient of an ``rfftn`` of one grid."""

    index: np.ndarray      # (n_coeff,) int, shell 0..n_bins-1, n_bins = outside every shell
    weight: np.ndarray     # (n_coeff,) float, 2 for a coefficient that stands for its mate
    s: np.ndarray          # (n_bins,) shell centres, Å⁻¹
    width: float           # Δs, Å⁻¹
    counts: np.ndarray     # (n_bins,) Fourier coefficients per shell (full sphere)

    @classmethod
    def of(cls, shape: tuple[int, int, int], voxel_size: np.ndarray, n_bins: int | None) -> "_Shells":
        """The shells of a grid; the last grid's are kept (a refinement's start and result
        share their box), so the arrays are read-only."""
        return _shells_of(tuple(int(n) for n in shape), tuple(float(v) for v in voxel_size),
                          n_bins)

    @classmethod
    def _compute(cls, shape: tuple[int, int, int], voxel_size: tuple[float, float, float],
                 n_bins: int | None) -> "_Shells":
        nz, ny, nx = shape
        vx, vy, vz = (float(v) for v in voxel_size)
        fz = np.fft.fftfreq(nz, d=vz)
        fy = np.fft.fftfreq(ny, d=vy)
        fx = np.fft.rfftfreq(nx, d=vx)
        # the largest sphere inside the Fourier box, and its coarsest sampling
        s_max = min(np.abs(fz).max(initial=0.0), np.abs(fy).max(initial=0.0), fx.max(initial=0.0))
        coarsest = max(1.0 / (nx * vx), 1.0 / (ny * vy), 1.0 / (nz * vz))
        if n_bins is None:
            n_bins = int(math.floor(s_max / coarsest + 1e-9))
        if int(n_bins) < 1 or s_max <= 0.0:
            raise InputError("n_bins", f"no Fourier shell fits the grid {shape[::-1]} "
                             f"(n_bins={n_bins}); the map is too small")
        n_bins = int(n_bins)
        width = s_max / n_bins
        s = np.sqrt(fz[:, None, None] ** 2 + fy[None, :, None] ** 2 + fx[None, None, :] ** 2)
        # shell k covers [(k - 1/2) Δs, (k + 1/2) Δs): centred on k Δs, DC (k = 0) left out
        k = np.rint(s / width).astype(np.int64).ravel()
        index = np.where((k >= 1) & (k <= n_bins), k - 1, n_bins)
        weight = np.full((nz, ny, fx.size), 2.0)
        weight[:, :, 0] = 1.0            # kx = 0 holds both members of each Friedel pair
        if nx % 2 == 0:
            weight[:, :, -1] = 1.0       # so does the kx = Nyquist plane of an even box
        weight = weight.ravel()
        counts = np.bincount(index, weights=weight, minlength=n_bins + 1)[:n_bins]
        shells = cls(index, weight, np.arange(1, n_bins + 1) * width, width,
                     np.rint(counts).astype(np.int64))
        for array in (shells.index, shells.weight, shells.s, shells.counts):
            array.flags.writeable = False
        return shells

    @property
    def nyquist(self) -> float:
        """Resolution (Å) at the outer edge of the last shell."""
        return float(1.0 / (self.s[-1] + 0.5 * self.width))

    def total(self, values: np.ndarray) -> np.ndarray:
        """Weighted sum of per-coefficient ``values`` in each shell."""
        return np.bincount(self.index, weights=self.weight * values.ravel(),
                           minlength=self.s.size + 1)[: self.s.size]

    def correlation(self, fa: np.ndarray, fb: np.ndarray) -> np.ndarray:
        """FSC of two transforms, NaN in a shell where either has no power."""
        cross = self.total((fa * np.conj(fb)).real)
        power = self.total(np.abs(fa) ** 2) * self.total(np.abs(fb) ** 2)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(power > 0.0, cross / np.sqrt(power), np.nan)


@functools.lru_cache(maxsize=1)
def _shells_of(shape: tuple[int, int, int], voxel_size: tuple[float, float, float],
               n_bins: int | None) -> _Shells:
    return _Shells._compute(shape, voxel_size, n_bins)


def _check_mask(mask, grid: Map) -> np.ndarray | None:
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.shape != grid.data.shape:
        raise InputError("mask", f"shape (nz, ny, nx) {mask.shape} differs from the map's "
                         f"{grid.data.shape}")
    mask = mask.astype(np.float64)
    if not np.all(np.isfinite(mask)) or mask.min() < 0.0 or mask.max() > 1.0 or mask.max() == 0.0:
        raise InputError("mask", "values must lie in [0, 1] and not all be 0")
    return mask


def _transform(data: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """rfftn of a map, masked after removing its mean inside the mask (offset-free)."""
    data = np.asarray(data, dtype=np.float64)
    if mask is not None:
        data = (data - np.sum(data * mask) / np.sum(mask)) * mask
    return scipy.fft.rfftn(data, workers=available())


def _dataset(shells: _Shells, voxel_size: np.ndarray, curves: dict[str, np.ndarray],
             masked: bool, **attrs) -> xr.Dataset:
    coords = {"s": ("s", shells.s, {"units": "Å⁻¹", "long_name": "spatial frequency 1/d (shell centre)"}),
              "resolution": ("s", 1.0 / shells.s, {"units": "Å", "long_name": "resolution d = 1/s"})}
    data = {name: ("s", values, {"long_name": CURVE_LABELS.get(name, name), "units": "1"})
            for name, values in curves.items()}
    data["n_coefficients"] = ("s", shells.counts,
                              {"long_name": "Fourier coefficients in the shell (full sphere)"})
    import xarray as xr

    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update({"shell_width": shells.width, "shell_width_units": "Å⁻¹",
                     "nyquist_resolution": shells.nyquist,
                     "voxel_size": [float(v) for v in voxel_size], "masked": int(masked),
                     "fsc_definition": "Re sum(Fa Fb*) / sqrt(sum|Fa|^2 sum|Fb|^2) per shell"})
    ds.attrs.update(attrs)
    return ds


# --------------------------------------------------------------------------- FSC


def fsc(map_a: Map, map_b: Map, mask: np.ndarray | None = None,
        n_bins: int | None = None) -> xr.Dataset:
    """Fourier shell correlation of two maps on the same grid.

    Parameters
    ----------
    map_a, map_b
        Maps on one orthogonal grid (:func:`require_same_grid`).
    mask : (nz, ny, nx) array in [0, 1], optional
        Applied to both maps (e.g. :func:`model_mask`), each after removing its mean inside
        the mask.
    n_bins
        Number of shells up to the Nyquist frequency of the coarsest axis; default one per
        coarsest reciprocal-lattice spacing, ``floor(s_nyquist · min(n_i v_i))``.

    Returns
    -------
    xarray.Dataset
        Dimension ``s`` (shell centres, Å⁻¹) with coordinate ``resolution`` (Å);
        variables ``fsc`` and ``n_coefficients`` (coefficients in the shell, both Friedel
        mates counted: for independent noise the FSC has standard deviation
        ``1/sqrt(n_coefficients)``).

    Raises
    ------
    InputError
        Maps on different grids (naming ``map_b``'s file), or a mask of the wrong shape.

    Examples
    --------
    >>> import numpy as np
    >>> from varref.maps import Map
    >>> rng = np.random.default_rng(0)
    >>> a = Map(rng.normal(size=(32, 32, 32)), [0, 0, 0], [1, 1, 1], [90, 90, 90])
    >>> curve = fsc(a, a)
    >>> curve.sizes["s"], float(curve["resolution"][-1])
    (16, 2.0)
    >>> bool(np.allclose(curve["fsc"], 1.0))
    True
    """
    require_same_grid(map_a, map_b)
    mask = _check_mask(mask, map_a)
    shells = _Shells.of(map_a.data.shape, map_a.voxel_size, n_bins)
    value = shells.correlation(_transform(map_a.data, mask), _transform(map_b.data, mask))
    return _dataset(shells, map_a.voxel_size, {"fsc": value}, mask is not None,
                    map_a=map_a.source, map_b=map_b.source)


def fsc_average(curve: xr.DataArray, n_coefficients: xr.DataArray, resolution: float) -> float:
    """FSC-average ``Σ N_s FSC_s / Σ N_s`` over the shells with centre ``s <= 1/resolution``.

    REFMAC's FSCaverage (Brown et al. 2015): the shell FSCs weighted by their number of
    Fourier coefficients, so it behaves like a correlation over all coefficients to the
    resolution. Shells with an undefined FSC (NaN) are left out.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> s = xr.DataArray([0.1, 0.2, 0.3], dims="s", coords={"s": [0.1, 0.2, 0.3]})
    >>> fsc_average(s * 0 + np.array([1.0, 0.5, 0.0]), s * 0 + np.array([10, 30, 60]), 4.0)
    0.625
    """
    return _fsc_average(np.asarray(curve, dtype=np.float64), np.asarray(curve["s"], dtype=np.float64),
                        np.asarray(n_coefficients, dtype=np.float64), resolution)


def _fsc_average(values: np.ndarray, s: np.ndarray, counts: np.ndarray, resolution: float) -> float:
    """:func:`fsc_average` on plain arrays (curve, shell centres, coefficient counts)."""
    if not resolution > 0:
        raise InputError("resolution", f"must be positive, got {resolution}")
    use = (s <= 1.0 / resolution + 1e-12) & np.isfinite(values)
    if not use.any():
        return float("nan")
    return float(np.sum(counts[use] * values[use]) / np.sum(counts[use]))


def crossing_resolution(curve: xr.DataArray, threshold: float) -> float:
    """Resolution (Å) where ``curve`` first falls below ``threshold``, going out from low
    resolution, by linear interpolation in ``s`` between the shell centres around it.

    The search starts at the first shell at or above the threshold, so that a lowest shell
    pulled down by the mask (few coefficients, most affected by it) does not end it. Returns
    the Nyquist edge of the curve when it never falls below the threshold, and NaN when it
    never reaches it.

    Examples
    --------
    >>> import xarray as xr
    >>> s = [0.1, 0.2, 0.3, 0.4]
    >>> crossing_resolution(xr.DataArray([0.9, 0.7, 0.3, 0.1], dims="s", coords={"s": s}), 0.5)
    4.0
    """
    return _crossing_resolution(np.asarray(curve, dtype=np.float64),
                                np.asarray(curve["s"], dtype=np.float64), threshold)


def _crossing_resolution(values: np.ndarray, s: np.ndarray, threshold: float) -> float:
    """:func:`crossing_resolution` on plain arrays (curve and shell centres)."""
    above = np.flatnonzero(values >= threshold)
    if above.size == 0:
        return float("nan")
    start = int(above[0])
    below = start + np.flatnonzero(~(values[start:] >= threshold))   # NaN: no signal
    if below.size == 0:
        width = s[1] - s[0] if s.size > 1 else s[0]
        return float(1.0 / (s[-1] + 0.5 * width))
    first = int(below[0])
    if not np.isfinite(values[first]):
        return float(1.0 / s[first - 1])
    fraction = (values[first - 1] - threshold) / (values[first - 1] - values[first])
    return float(1.0 / (s[first - 1] + fraction * (s[first] - s[first - 1])))


def full_map_fsc(half_map_fsc):
    """The FSC the full (averaged) map would have against an independent full map,
    ``2 F / (1 + F)`` from the half-map FSC ``F`` (Rosenthal & Henderson 2003).

    Examples
    --------
    >>> round(full_map_fsc(0.143), 4)
    0.2502
    """
    return 2.0 * half_map_fsc / (1.0 + half_map_fsc)


# --------------------------------------------------------------------------- model maps


def model_mask(model: Model, xyz: np.ndarray, grid: Map, radius: float = MASK_MARGIN,
               soft_edge: float = MASK_SOFT_EDGE) -> np.ndarray:
    """A soft mask around the model's heavy atoms on ``grid``'s lattice.

    1 within ``vdW-like radius + radius`` Å of any heavy atom (radii of the CC_mask,
    :func:`varref.engine.correlation.mask_radii`), falling to 0 over ``soft_edge`` Å
    outside it as a raised cosine ``(1 + cos(π t / soft_edge)) / 2`` of the distance ``t``
    from the hard region. The soft edge keeps the mask's own transform compact, so masking
    correlates neighbouring shells as little as possible.

    Parameters
    ----------
    model, xyz
        The model and its coordinates (N, 3), Å.
    grid
        The map whose lattice the mask is on.
    radius
        Margin added to every atom's vdW-like radius, Å (default 1.5: ~3 Å from the atoms).
    soft_edge
        Width of the cosine edge, Å (0: a hard mask).

    Returns
    -------
    (nz, ny, nx) float32 array in [0, 1]

    Examples
    --------
    >>> import varref
    >>> model = varref.example_helix(6)
    >>> grid = varref.simulate_map(model, 3.0)
    >>> mask = model_mask(model, model.xyz, grid)
    >>> float(mask.max()), float(mask.min())
    (1.0, 0.0)
    """
    from varref.engine.band_distance import cosine_edge_within_band
    from varref.engine.correlation import atom_mask, mask_radii

    if not (radius >= 0 and soft_edge >= 0):
        raise InputError("mask", f"radius and soft_edge must be >= 0, got {radius}, {soft_edge}")
    heavy = ~model.is_hydrogen
    xyz = np.asarray(xyz, dtype=np.float64)
    hard = atom_mask(xyz[heavy], mask_radii(model.element[heavy]) + radius, grid.data.shape,
                     grid.origin, grid.voxel_size)
    if not hard.any():
        raise InputError(grid.source or "map", "the model mask has no grid point inside the map")
    if soft_edge == 0:
        return hard.astype(np.float32)
    # distances beyond the edge all give 0: only a band around the hard region is computed
    return cosine_edge_within_band(hard, grid.voxel_size[::-1], soft_edge)


def band_limited_model_map(model: Model, xyz: np.ndarray, grid: Map,
                           oversample: float = 1.5) -> np.ndarray:
    """The model map on ``grid``'s lattice, atoms with their own B, no resolution blur, and
    free of aliasing up to the grid's Nyquist frequency.

    A Gaussian sampled directly on the map's grid folds its power beyond Nyquist back into
    the high-resolution shells (badly for atoms with small B). As gemmi's density calculator
    does, the atoms are summed on a finer grid (about ``oversample`` times as many points
    per axis, an FFT-friendly size) with just enough extra B for that grid (removed again in
    Fourier space), and only the Fourier coefficients the map's grid can hold are kept. Both
    grids span the same box, so their Fourier coefficients sit on the same reciprocal
    lattice and the map's are cut out of the fine grid's transform; the ratio need not be an
    integer. Hydrogens are left out, as in the map target.

    Parameters
    ----------
    model, xyz
        The model and its coordinates (N, 3), Å.
    grid
        The map whose lattice the result is on.
    oversample
        Fine-grid points per map point along each axis (>= 1). At 1.5 a frequency of the
        map's band aliases only from beyond twice its Nyquist frequency, where the extra
        B damps every atom below 10⁻³; 2 (the previous default) gives the same map within
        10⁻⁴ of its r.m.s. at 2.4× the cost.

    Examples
    --------
    >>> import varref
    >>> model = varref.example_helix(6)
    >>> grid = varref.simulate_map(model, 3.0)
    >>> band_limited_model_map(model, model.xyz, grid).shape == grid.data.shape
    True
    """
    from varref.engine.model_map import model_map, scattering_coefficients

    if not oversample >= 1:
        raise ValueError("oversample must be >= 1")
    use = ~model.is_hydrogen
    coeff_a, coeff_b = scattering_coefficients(model.element[use])
    b_iso = np.asarray(model.b_iso[use], dtype=np.float64)
    coarse = np.array(grid.data.shape)                        # (nz, ny, nx)
    length = coarse * grid.voxel_size[::-1]                   # box edge per axis, Å (z, y, x)
    fine = np.array([scipy.fft.next_fast_len(int(math.ceil(oversample * n)), real=True)
                     for n in coarse])
    # on the fine grid the aliases of the map's band (|k| <= n/2) start at k = m - n/2; enough
    # B damps every atom's transform there below 1e-3 of its value at s = 0 (the blur is
    # divided out again below)
    s_alias = float(np.min((fine - coarse / 2.0) / length))
    b_min = 4.0 * math.log(1e3) / s_alias**2
    sharpest = float(np.min(coeff_b) + np.min(b_iso)) if b_iso.size else b_min
    blur = max(0.0, b_min - sharpest)
    fine_voxel = (length / fine)[::-1]                        # (x, y, z) as Map
    density = model_map(np.asarray(xyz, dtype=np.float64)[use], tuple(int(m) for m in fine),
                        grid.origin, fine_voxel, coeff_a, coeff_b, b_iso, model.occupancy[use],
                        blur=blur, dtype=np.float32)
    # scipy.fft keeps single precision (numpy's FFT would double the memory traffic)
    transform = scipy.fft.rfftn(density, workers=available())
    del density
    band = _coarse_band(transform, tuple(int(n) for n in coarse))
    del transform
    fz = np.fft.fftfreq(coarse[0], d=length[0] / coarse[0])[:, None, None]
    fy = np.fft.fftfreq(coarse[1], d=length[1] / coarse[1])[None, :, None]
    fx = np.fft.rfftfreq(coarse[2], d=length[2] / coarse[2])[None, None, :]
    # undo the computational blur; the sums differ by the number of points (same box)
    scale = float(np.prod(coarse / fine))
    band *= (scale * np.exp(blur * (fx**2 + fy**2 + fz**2) / 4.0)).astype(np.float32)
    return np.ascontiguousarray(scipy.fft.irfftn(band, s=tuple(int(n) for n in coarse),
                                                 axes=(0, 1, 2), workers=available()),
                                dtype=np.float32)


def _along(axis: int, start: int, stop: int) -> tuple[slice, ...]:
    """The index of planes ``start:stop`` along ``axis`` of a 3-D array."""
    index = [slice(None)] * 3
    index[axis] = slice(start, stop)
    return tuple(index)


def _coarse_band(transform: np.ndarray, coarse: tuple[int, int, int]) -> np.ndarray:
    """The coefficients of a fine grid's ``rfftn`` that a grid of shape ``coarse`` over the
    same box holds, in that grid's ``rfftn`` layout. A Nyquist coefficient of an even axis
    gathers both ±n/2 (as sampling the band-limited fine map on the coarse grid would)."""
    # the x half-axis first (the fine grid's k = 0..n/2 are the coarse grid's), so that the
    # full axes below copy only what is kept
    n = coarse[2]
    out = transform[:, :, :n // 2 + 1]
    for axis in (0, 1):  # full complex axes: k = 0..n/2 and -n/2..-1
        n_axis, m = coarse[axis], out.shape[axis]
        kept = np.concatenate([out[_along(axis, 0, n_axis // 2 + 1)],
                               out[_along(axis, m - (n_axis - n_axis // 2 - 1), m)]], axis=axis)
        if n_axis % 2 == 0:
            kept[_along(axis, n_axis // 2, n_axis // 2 + 1)] += \
                out[_along(axis, m - n_axis // 2, m - n_axis // 2 + 1)]
        out = kept
    out = np.ascontiguousarray(out)
    if n % 2 == 0:
        # the half spectrum's Nyquist plane stands for ±n/2, the second its Hermitian mirror
        out[:, :, n // 2] *= 2.0
    return out


def _as_map(density) -> Map:
    return density if isinstance(density, Map) else read_map(density)


def model_map_fsc(model: Model, xyz: np.ndarray | None, density: Map | str | PathLike | None,
                  resolution: float, half_maps=None, mask: bool | np.ndarray = True,
                  n_bins: int | None = None, mask_radius: float = MASK_MARGIN,
                  mask_soft_edge: float = MASK_SOFT_EDGE) -> xr.Dataset:
    """Model–map FSC, and with half maps the work/free model–half-map FSCs and the half-map FSC.

    Parameters
    ----------
    model, xyz
        The model and its coordinates (None: the model's).
    density
        The full map (Map or path). None with ``half_maps``: their average.
    resolution
        Resolution (Å) up to which the FSC-averages are taken.
    half_maps
        Optional pair (half 1, half 2) of Maps or paths on the full map's grid.
    mask
        True (default): :func:`model_mask` with ``mask_radius``, ``mask_soft_edge``, and the
        maps boxed to the mask (the masked maps are unchanged, the FFTs smaller); False: the
        whole box, unmasked; or an array on the map's grid.
    n_bins
        Number of shells (default as :func:`fsc`).

    Returns
    -------
    xarray.Dataset
        Curves along ``s``: ``fsc_model`` (model vs full map) and, with half maps,
        ``fsc_model_half1`` (work), ``fsc_model_half2`` (free), ``fsc_half``,
        ``fsc_full_estimate`` (``2F/(1+F)``) and ``fsc_ref`` (``sqrt`` of it: what a perfect
        model would reach against the full map); ``n_coefficients``. The summary numbers
        (:func:`fsc_summary`) are also in ``attrs``.

    Examples
    --------
    >>> import varref
    >>> model = varref.example_helix(10)
    >>> h1 = varref.simulate_map(model, 3.0, snr=2.0, seed=1)
    >>> h2 = varref.simulate_map(model, 3.0, snr=2.0, seed=2, grid=h1)
    >>> ds = model_map_fsc(model, None, None, 3.0, half_maps=(h1, h2))
    >>> sorted(k for k in ds.data_vars if k.startswith("fsc_model"))
    ['fsc_model', 'fsc_model_half1', 'fsc_model_half2']
    """
    curves = _model_map_fsc_curves(model, xyz, density, resolution, half_maps, mask, n_bins,
                                   mask_radius, mask_soft_edge)
    ds = _dataset(curves.shells, curves.voxel_size, curves.curves, curves.masked, **curves.attrs)
    ds.attrs.update({key: (float("nan") if value is None else value)
                     for key, value in curves.summary(resolution).items()})
    return ds


def _model_map_fsc_curves(model: Model, xyz: np.ndarray | None, density, resolution: float,
                          half_maps, mask, n_bins, mask_radius: float, mask_soft_edge: float
                          ) -> "_ModelMapCurves":
    """The curves of :func:`model_map_fsc` (arguments as there)."""
    if not resolution > 0:
        raise InputError("resolution", f"must be positive, got {resolution}")
    xyz = model.xyz if xyz is None else np.asarray(xyz, dtype=np.float64)
    halves = None
    if half_maps is not None:
        if len(half_maps) != 2:
            raise InputError("half_maps", f"expected two half maps, got {len(half_maps)}")
        halves = read_half_maps(*half_maps)
    if density is None:
        if halves is None:
            raise InputError("map", "give a full map or two half maps")
        density = average_map(*halves)
    density = _as_map(density)
    if halves is not None:
        require_same_grid(halves[0], density)   # names the full map when it is the odd one
    maps = [density] + (list(halves) if halves else [])
    mask_array, mask_note = None, "none"
    if isinstance(mask, np.ndarray):
        mask_array, mask_note = _check_mask(mask, density), "given"
    elif mask:
        # box to the mask's reach: the masked maps are the same, the transforms smaller
        from varref.engine.correlation import mask_radii

        heavy = ~model.is_hydrogen
        reach = float(mask_radii(model.element[heavy]).max(initial=2.0)) + mask_radius + mask_soft_edge
        maps = [m.box_around(xyz[heavy], margin=reach + 2.0 * float(m.voxel_size.max())) for m in maps]
        mask_array = model_mask(model, xyz, maps[0], mask_radius, mask_soft_edge).astype(np.float64)
        mask_note = f"model: vdW radius + {mask_radius:g} Å, cosine edge {mask_soft_edge:g} Å"
    grid = maps[0]
    shells = _Shells.of(grid.data.shape, grid.voxel_size, n_bins)
    calculated = _transform(band_limited_model_map(model, xyz, grid), mask_array)
    transforms = [_transform(m.data, mask_array) for m in maps]
    curves = {"fsc_model": shells.correlation(calculated, transforms[0])}
    if halves is not None:
        half = shells.correlation(transforms[1], transforms[2])
        full = full_map_fsc(np.clip(half, 0.0, None))   # a negative F means no signal
        curves.update({"fsc_model_half1": shells.correlation(calculated, transforms[1]),
                       "fsc_model_half2": shells.correlation(calculated, transforms[2]),
                       "fsc_half": half, "fsc_full_estimate": full, "fsc_ref": np.sqrt(full)})
    return _ModelMapCurves(shells, grid.voxel_size, curves, mask_array is not None,
                           {"map": density.source, "model": model.source, "mask": mask_note})


@dataclass
class _ModelMapCurves:
    """What :func:`model_map_fsc` puts in its Dataset, as arrays."""

    shells: _Shells
    voxel_size: np.ndarray
    curves: dict[str, np.ndarray]
    masked: bool
    attrs: dict[str, str]

    def summary(self, resolution: float | None) -> dict[str, object]:
        return _summary(self.curves, self.shells.s, self.shells.counts, self.shells.nyquist,
                        resolution)


def model_map_fsc_summary(model: Model, xyz: np.ndarray | None, density: Map | str | PathLike | None,
                          resolution: float, half_maps=None, mask: bool | np.ndarray = True,
                          n_bins: int | None = None, mask_radius: float = MASK_MARGIN,
                          mask_soft_edge: float = MASK_SOFT_EDGE) -> dict[str, object]:
    """``fsc_summary(model_map_fsc(...))`` without building the Dataset (arguments and keys
    as those two functions): what `varref refine` reports, without importing xarray."""
    return _model_map_fsc_curves(model, xyz, density, resolution, half_maps, mask, n_bins,
                                 mask_radius, mask_soft_edge).summary(resolution)


def fsc_summary(dataset: xr.Dataset, resolution: float | None = None) -> dict[str, object]:
    """Summary numbers of a :func:`model_map_fsc` (or :func:`fsc`) dataset, JSON-ready.

    Keys (those whose curves are present): ``resolution`` (Å, the FSC-average limit),
    ``fsc_average_model``, ``d_fsc05_model`` (Å); with half maps ``fsc_average_half1``
    (work), ``fsc_average_half2`` (free), ``fsc_average_gap`` (work − free),
    ``d_fsc05_half1``, ``d_fsc05_half2``, ``fsc_average_half``, ``d_fsc0143_half``
    (the half-map resolution); for a plain :func:`fsc` dataset ``fsc_average``,
    ``d_fsc05`` and ``d_fsc0143``. Also ``nyquist_resolution`` and ``n_shells``. A value
    that cannot be determined is None. Without ``resolution`` the dataset's own
    ``attrs["resolution"]`` is used (FSC-averages are left out when neither is known).

    Examples
    --------
    >>> import varref
    >>> model = varref.example_helix(10)
    >>> density = varref.simulate_map(model, 3.0, snr=5.0, seed=1)
    >>> sorted(fsc_summary(model_map_fsc(model, None, density, 3.0)))
    ['d_fsc05_model', 'fsc_average_model', 'n_shells', 'nyquist_resolution', 'resolution']
    """
    if resolution is None:
        resolution = dataset.attrs.get("resolution")
        if resolution is not None and not np.isfinite(resolution):
            resolution = None
    curves = {name: np.asarray(dataset[name], dtype=np.float64) for name in dataset.data_vars
              if name != "n_coefficients"}
    return _summary(curves, np.asarray(dataset["s"], dtype=np.float64),
                    np.asarray(dataset["n_coefficients"], dtype=np.float64),
                    dataset.attrs.get("nyquist_resolution", np.nan), resolution)


def _summary(curves: dict[str, np.ndarray], s: np.ndarray, counts: np.ndarray, nyquist: float,
             resolution: float | None) -> dict[str, object]:
    """:func:`fsc_summary` of curves along shell centres ``s`` with ``counts`` coefficients."""

    def clean(value: float) -> float | None:
        return round(float(value), 4) if np.isfinite(value) else None

    out: dict[str, object] = {"resolution": None if resolution is None else float(resolution),
                              "nyquist_resolution": clean(nyquist), "n_shells": int(len(s))}
    names = {"fsc_model": "model", "fsc_model_half1": "half1", "fsc_model_half2": "half2"}
    for variable, suffix in names.items():
        if variable in curves:
            if resolution is not None:
                out[f"fsc_average_{suffix}"] = clean(_fsc_average(curves[variable], s, counts, resolution))
            out[f"d_fsc05_{suffix}"] = clean(_crossing_resolution(curves[variable], s, MODEL_MAP_THRESHOLD))
    if "fsc_half" in curves:
        if resolution is not None:
            out["fsc_average_half"] = clean(_fsc_average(curves["fsc_half"], s, counts, resolution))
            work, free = out["fsc_average_half1"], out["fsc_average_half2"]
            out["fsc_average_gap"] = None if work is None or free is None else round(work - free, 4)
        out["d_fsc0143_half"] = clean(_crossing_resolution(curves["fsc_half"], s, HALF_MAP_THRESHOLD))
    if "fsc" in curves:
        if resolution is not None:
            out["fsc_average"] = clean(_fsc_average(curves["fsc"], s, counts, resolution))
        out["d_fsc05"] = clean(_crossing_resolution(curves["fsc"], s, MODEL_MAP_THRESHOLD))
        out["d_fsc0143"] = clean(_crossing_resolution(curves["fsc"], s, HALF_MAP_THRESHOLD))
    return out


# --------------------------------------------------------------------------- half maps


def read_half_maps(half1, half2) -> tuple[Map, Map]:
    """Two half maps (paths or Maps), checked to be on one grid and not the same map.

    Raises
    ------
    InputError
        Naming the second half map when the grids differ or the maps are identical.

    Examples
    --------
    >>> h1, h2 = read_half_maps("half1.mrc", "half2.mrc")     # doctest: +SKIP
    """
    first, second = _as_map(half1), _as_map(half2)
    require_same_grid(first, second)
    if first is second or np.array_equal(first.data, second.data):
        raise InputError(second.source or "half map 2", f"identical to {first.source or 'half map 1'}; "
                         "half maps must come from independent halves of the data")
    return first, second


def average_map(half1: Map, half2: Map) -> Map:
    """The full map as the average of two half maps (for refinement without a full map).

    Examples
    --------
    >>> import varref
    >>> model = varref.example_helix(6)
    >>> h1 = varref.simulate_map(model, 3.0, snr=2.0, seed=1)
    >>> h2 = varref.simulate_map(model, 3.0, snr=2.0, seed=2, grid=h1)
    >>> average_map(h1, h2).data.shape == h1.data.shape
    True
    """
    require_same_grid(half1, half2)
    data = 0.5 * (half1.data.astype(np.float64) + half2.data.astype(np.float64))
    return replace(half1, data=data.astype(np.float32),
                   source=f"average of {half1.source or 'half 1'} and {half2.source or 'half 2'}")


# --------------------------------------------------------------------------- cross-validation


@dataclass
class CrossValidation:
    """A refinement against half map 1 judged against half map 2.

    Attributes
    ----------
    result : varref.api.RefinementResult
        The refinement against half map 1.
    fsc_start, fsc : xarray.Dataset
        :func:`model_map_fsc` of the starting and the refined model with both half maps.
    summary : dict
        ``fsc_average_work`` / ``fsc_average_free`` (FSC-average against half 1 / half 2),
        ``fsc_average_gap`` (work − free), the same three for the start (``start_…``),
        ``d_fsc05_work``, ``d_fsc05_free``, ``d_fsc0143_half``, ``resolution``, ``weight``.
    """

    result: object
    fsc_start: xr.Dataset
    fsc: xr.Dataset
    summary: dict

    def to_dict(self) -> dict[str, object]:
        return dict(self.summary)


def cross_validate(model, half1, half2, resolution: float, *, xyz: np.ndarray | None = None,
                   mask: bool = True, restraints=None, **options) -> CrossValidation:
    """Refine against half map 1, then compare the FSC with half 1 (work) and half 2 (free).

    The free half map shares the signal but not the noise of the work half map: a model
    that fits noise gains in the work FSC and not in the free one, so the gap (work − free
    FSC-average) measures over-fitting (Yamashita et al. 2021; Brown et al. 2015).

    Parameters
    ----------
    model
        Model or path.
    half1, half2
        Half maps (Maps or paths) on one grid.
    resolution
        Resolution, Å (refinement and FSC-averages).
    xyz
        Starting coordinates (default the model's).
    mask
        As in :func:`model_map_fsc`.
    restraints, **options
        Passed to :func:`varref.refine` (``weight``, ``macro_cycles``, ...).

    Examples
    --------
    >>> import varref
    >>> model = varref.example_helix(10)
    >>> h1 = varref.simulate_map(model, 3.0, snr=2.0, seed=1)
    >>> h2 = varref.simulate_map(model, 3.0, snr=2.0, seed=2, grid=h1)
    >>> cv = cross_validate(model, h1, h2, 3.0, macro_cycles=1)   # doctest: +SKIP
    >>> cv.summary["fsc_average_gap"]                             # doctest: +SKIP
    """
    from varref.api import as_model, refine

    model = as_model(model)
    first, second = read_half_maps(half1, half2)
    start = model.xyz if xyz is None else np.asarray(xyz, dtype=np.float64)
    result = refine(model, first, resolution, xyz=start, restraints=restraints, **options)
    full = average_map(first, second)
    before = model_map_fsc(model, start, full, resolution, half_maps=(first, second), mask=mask)
    after = model_map_fsc(result.model, result.xyz, full, resolution, half_maps=(first, second),
                          mask=mask)
    b, a = fsc_summary(before, resolution), fsc_summary(after, resolution)
    summary = {"resolution": float(resolution), "weight": float(result.weight),
               "fsc_average_work": a["fsc_average_half1"], "fsc_average_free": a["fsc_average_half2"],
               "fsc_average_gap": a["fsc_average_gap"],
               "start_fsc_average_work": b["fsc_average_half1"],
               "start_fsc_average_free": b["fsc_average_half2"],
               "start_fsc_average_gap": b["fsc_average_gap"],
               "d_fsc05_work": a["d_fsc05_half1"], "d_fsc05_free": a["d_fsc05_half2"],
               "d_fsc0143_half": a["d_fsc0143_half"]}
    return CrossValidation(result, before, after, summary)


# --------------------------------------------------------------------------- output


def _netcdf_ready(dataset: xr.Dataset) -> xr.Dataset:
    """NetCDF-3 (scipy) attributes: numbers, strings and number lists; None → NaN, bool → int."""
    def fix(attrs: dict) -> dict:
        out = {}
        for key, value in attrs.items():
            if value is None:
                value = float("nan")
            elif isinstance(value, (bool, np.bool_)):
                value = int(value)
            elif isinstance(value, (list, tuple)):
                value = np.asarray(value, dtype=np.float64)
            out[key] = value
        return out

    ds = dataset.copy()
    ds.attrs = fix(ds.attrs)
    for name in list(ds.variables):
        ds[name].attrs = fix(ds[name].attrs)
    return ds


def write_fsc(dataset: xr.Dataset, path: str | PathLike) -> None:
    """Write FSC curves: ``.nc`` as NetCDF (scipy engine, every curve and attribute),
    ``.json`` as the summary (:func:`fsc_summary`) plus the curves as lists (NaN → null).

    Examples
    --------
    >>> write_fsc(model_map_fsc(model, None, "map.mrc", 3.4), "fsc.json")   # doctest: +SKIP
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".nc", ".json"):
        raise InputError(path, "FSC output must end in .nc (NetCDF) or .json")
    if suffix == ".nc":
        ds = _netcdf_ready(dataset)
        with atomic_path(path) as tmp:
            ds.to_netcdf(tmp, engine="scipy")
        return

    def values(array) -> list:
        return [None if not np.isfinite(v) else round(float(v), 6) for v in np.asarray(array, float)]

    shells = {"s": values(dataset["s"]), "resolution": values(dataset["resolution"])}
    shells.update({name: values(dataset[name]) for name in dataset.data_vars})
    shells["n_coefficients"] = [int(v) for v in np.asarray(dataset["n_coefficients"])]
    document = {"summary": fsc_summary(dataset), "units": {"s": "1/Å", "resolution": "Å"},
                "mask": dataset.attrs.get("mask", "given" if dataset.attrs.get("masked") else "none"),
                "shells": shells}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(document, indent=1) + "\n")


def plot_fsc(dataset: xr.Dataset, path: str | PathLike, title: str | None = None) -> None:
    """PNG of the FSC curves of ``dataset`` (see :func:`varref.fsc_plot.plot_fsc`)."""
    from varref.fsc_plot import plot_fsc as plot

    plot(dataset, path, title=title)
