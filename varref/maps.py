"""Density maps: read MRC/CCP4 and MTZ, write MRC, box and normalise.

Grid convention (fixed for all of varref, converted once here at the file boundary)
-----------------------------------------------------------------------------------
``Map.data`` is a float32, C-contiguous array of shape ``(nz, ny, nx)``, indexed
``data[iz, iy, ix]`` — x varies fastest in memory, as in an MRC file with axis order 1,2,3.
``Map.origin`` is the Cartesian position (x, y, z) in Å of voxel ``[0, 0, 0]`` and
``Map.voxel_size`` the spacing (x, y, z) in Å, so voxel ``[iz, iy, ix]`` sits at
``origin + (ix, iy, iz) * voxel_size``.

Where an MRC file puts its box
------------------------------
MRC files have two ways to place the box: NXSTART/NYSTART/NZSTART (grid units, the
crystallographic convention that CCP4, gemmi and Coot follow) and the ORIGIN field (Å, which
Chimera and ChimeraX write when they crop a map). We follow ChimeraX: if ORIGIN is non-zero
it gives the position of the first voxel; otherwise the start indices times the voxel size
do. Axis order (MAPC/MAPR/MAPS) is honoured: the data are transposed to (z, y, x).
The voxel size per axis is CELLA / (MX, MY, MZ).

When writing, an origin that is a whole number of voxels is written as NXSTART.. with
ORIGIN = 0 (read identically by every program); otherwise ORIGIN is set and the starts are 0.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from os import PathLike
from pathlib import Path

import numpy as np

from varref.atomic import atomic_path
from varref.engine.parallel import available
from varref.errors import InputError

#: Column pairs tried, in order, when an MTZ file is read without explicit labels.
MTZ_LABEL_PAIRS = (
    ("FWT", "PHWT"),
    ("2FOFCWT", "PH2FOFCWT"),
    ("FWT", "PHIFWT"),
    ("FC_ALL", "PHIC_ALL"),
    ("FC", "PHIC"),
    ("F", "PHI"),
    ("Fout0", "Pout0"),
)


@dataclass(eq=False)
class Map:
    """A density map on an orthogonal grid.

    Attributes
    ----------
    data : (nz, ny, nx) float32
        Density values, C-contiguous, x fastest.
    origin : (3,) float64
        Cartesian (x, y, z) of voxel [0, 0, 0] in Å.
    voxel_size : (3,) float64
        Voxel spacing (x, y, z) in Å.
    cell_angles : (3,) float64
        Unit-cell angles of the source file (90° for cryo-EM maps). Only orthogonal maps
        can be used for refinement; see :meth:`require_orthogonal`.
    source : str
        File the map came from, for messages.
    """

    data: np.ndarray
    origin: np.ndarray
    voxel_size: np.ndarray
    cell_angles: np.ndarray
    source: str = ""

    def __post_init__(self) -> None:
        self.data = np.ascontiguousarray(self.data, dtype=np.float32)
        self.origin = np.asarray(self.origin, dtype=np.float64).reshape(3)
        self.voxel_size = np.asarray(self.voxel_size, dtype=np.float64).reshape(3)
        self.cell_angles = np.asarray(self.cell_angles, dtype=np.float64).reshape(3)

    @property
    def shape_xyz(self) -> tuple[int, int, int]:
        """Grid size as (nx, ny, nz)."""
        nz, ny, nx = self.data.shape
        return nx, ny, nz

    @property
    def is_orthogonal(self) -> bool:
        return bool(np.allclose(self.cell_angles, 90.0, atol=1e-3))

    def require_orthogonal(self) -> None:
        """Raise :class:`InputError` unless the grid axes are orthogonal."""
        if not self.is_orthogonal:
            raise InputError(
                self.source or "map",
                f"non-orthogonal cell (angles {tuple(np.round(self.cell_angles, 3))}); "
                "refinement needs an orthogonal grid, as cryo-EM maps have",
            )

    def fractional_index(self, xyz: np.ndarray) -> np.ndarray:
        """Grid coordinates (ix, iy, iz) — continuous — of Cartesian points (…, 3)."""
        return (np.asarray(xyz, dtype=np.float64) - self.origin) / self.voxel_size

    def contains(self, xyz: np.ndarray) -> np.ndarray:
        """Boolean per point: inside the grid (between the first and last voxel centres)."""
        g = self.fractional_index(xyz)
        upper = np.array(self.shape_xyz, dtype=np.float64) - 1.0
        return np.all((g >= 0.0) & (g <= upper), axis=-1)

    def values_at(self, xyz: np.ndarray, order: int = 1) -> np.ndarray:
        """Map values at Cartesian points by spline interpolation (scipy), 0 outside.

        For reporting and checks; refinement uses the engine's tricubic kernel.
        """
        from scipy.ndimage import map_coordinates

        g = self.fractional_index(np.atleast_2d(xyz))
        return map_coordinates(self.data, g[:, ::-1].T, order=order, mode="constant", cval=0.0)

    def normalised(self) -> "Map":
        """A copy with zero mean and unit r.m.s. (i.e. in units of sigma)."""
        data = self.data.astype(np.float64)
        data -= data.mean()
        rms = np.sqrt(np.mean(data * data))
        if rms == 0.0:
            raise InputError(self.source or "map", "map is constant; cannot normalise")
        return replace(self, data=(data / rms).astype(np.float32))

    def blurred(self, b: float) -> "Map":
        """A copy with Fourier coefficients multiplied by exp(-b s²/4) (s = 1/d, Å⁻¹):
        b > 0 blurs, b < 0 sharpens (the convention of Phenix and servalcat)."""
        data = self.data.astype(np.float64)
        import scipy.fft  # scipy.fft costs ~0.3 s to import: only when blurring

        transform = scipy.fft.rfftn(data, workers=available())
        nz, ny, nx = data.shape
        fz = np.fft.fftfreq(nz, d=self.voxel_size[2])[:, None, None]
        fy = np.fft.fftfreq(ny, d=self.voxel_size[1])[None, :, None]
        fx = np.fft.rfftfreq(nx, d=self.voxel_size[0])[None, None, :]
        transform *= np.exp(-b * (fx**2 + fy**2 + fz**2) / 4.0)
        return replace(self, data=scipy.fft.irfftn(transform, s=data.shape, axes=(0, 1, 2),
                                                   workers=available()).astype(np.float32))

    def prepared(self, xyz: np.ndarray, margin: float = 5.0, b: float | None = None) -> "Map":
        """The map as refinement reads it: boxed around ``xyz`` with ``margin`` Å (at least
        :data:`MIN_PREPARED_MARGIN`, so the interpolation stencil of every atom is inside),
        blurred/sharpened by ``b`` when given, and normalised to zero mean and unit r.m.s."""
        self.require_orthogonal()
        return self.box_around(xyz, margin=max(margin, MIN_PREPARED_MARGIN)).conditioned(b)

    def conditioned(self, b: float | None = None) -> "Map":
        """The second half of :meth:`prepared`, for a map already boxed: blurred/sharpened by
        ``b`` when given, then normalised (a map series reads only the box from its store,
        :meth:`varref.ensemble.mapseries.MapSeriesBase.frame_prepared`, and finishes here)."""
        boxed = self.blurred(b) if b else self
        return boxed.normalised()

    def box_around(self, xyz: np.ndarray, margin: float = 5.0) -> "Map":
        """The sub-grid covering the points' bounding box plus ``margin`` Å, clipped to the map.

        Raises :class:`InputError` when no point lies inside the map (the usual cause is a
        model and map in different frames, or a wrong origin).
        """
        (x0, y0, z0), (x1, y1, z1) = box_bounds(self.origin, self.voxel_size, self.shape_xyz,
                                                xyz, margin, self.source or "map")
        return replace(
            self,
            data=self.data[z0:z1, y0:y1, x0:x1].copy(),
            origin=self.origin + np.array((x0, y0, z0)) * self.voxel_size,
        )


#: Smallest margin (Å) :meth:`Map.prepared` boxes with: the interpolation stencil of an atom.
MIN_PREPARED_MARGIN = 5.0


def box_bounds(origin: np.ndarray, voxel_size: np.ndarray, shape_xyz: tuple[int, int, int],
               xyz: np.ndarray, margin: float, source: str = "map"
               ) -> tuple[np.ndarray, np.ndarray]:
    """Voxel index range of :meth:`Map.box_around` on a grid given by its geometry alone.

    Parameters
    ----------
    origin, voxel_size
        (x, y, z) of voxel [0, 0, 0] and the spacing, Å.
    shape_xyz
        Grid size (nx, ny, nz).
    xyz
        (..., 3) points, Å.
    margin
        Å added on every side of the points' bounding box.
    source
        Named in the error.

    Returns
    -------
    lower, upper : (3,) int arrays
        (ix, iy, iz) of the first voxel and one past the last, clipped to the grid: the box is
        ``data[lower[2]:upper[2], lower[1]:upper[1], lower[0]:upper[0]]``.

    Raises
    ------
    InputError
        No point lies inside the grid (between its first and last voxel centres).

    Examples
    --------
    >>> lower, upper = box_bounds(np.zeros(3), np.ones(3), (10, 10, 10), [[4.5, 4.5, 4.5]], 1.0)
    >>> lower.tolist(), upper.tolist()
    ([3, 3, 3], [7, 7, 7])
    """
    origin = np.asarray(origin, dtype=np.float64)
    voxel_size = np.asarray(voxel_size, dtype=np.float64)
    shape = np.array(shape_xyz)
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    grid = (xyz - origin) / voxel_size
    inside = np.all((grid >= 0.0) & (grid <= shape - 1.0), axis=-1)
    if not inside.any():
        raise InputError(
            source,
            f"the model lies entirely outside the map (model spans "
            f"{np.round(xyz.min(0), 1).tolist()} to {np.round(xyz.max(0), 1).tolist()} Å; "
            f"map spans {np.round(origin, 1).tolist()} to "
            f"{np.round(origin + (shape - 1) * voxel_size, 1).tolist()} Å)",
        )
    lower = np.floor((xyz.min(0) - margin - origin) / voxel_size).astype(int)
    upper = np.ceil((xyz.max(0) + margin - origin) / voxel_size).astype(int) + 1
    return np.maximum(lower, 0), np.minimum(upper, shape)


# --------------------------------------------------------------------------- reading


def read_map(path: str | PathLike, mtz_labels: tuple[str, str] | None = None,
             sample_rate: float = 3.0) -> Map:
    """Read a map: MRC/CCP4 (``.mrc .map .ccp4``, optionally gzipped) or MTZ coefficients.

    Parameters
    ----------
    path
        Map file. A ``.mtz`` file is read as map coefficients and Fourier-transformed.
    mtz_labels
        (F, PHI) column labels for MTZ input; default: the first pair of
        :data:`MTZ_LABEL_PAIRS` present.
    sample_rate
        MTZ only: grid spacing is d_min / sample_rate.

    Raises
    ------
    InputError
        Missing/empty file, header inconsistent with the data, zero-size grid, NaN/Inf values.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "map file not found")
    if path.is_dir():
        raise InputError(path, "is a directory, expected a map file")
    if path.stat().st_size == 0:
        raise InputError(path, "map file is empty")
    if path.suffix.lower() == ".mtz":
        density = read_mtz_map(path, mtz_labels, sample_rate)
    else:
        density = _read_mrc(path)
    if density.data.size == 0:
        raise InputError(path, "map has zero size")
    if not np.all(np.isfinite(density.data)):
        bad = int(np.count_nonzero(~np.isfinite(density.data)))
        raise InputError(path, f"map contains {bad} NaN or infinite value(s)")
    return density


def _read_mrc(path: Path) -> Map:
    import mrcfile

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # mrcfile warns on odd but legal headers
            with mrcfile.open(str(path), mode="r", permissive=False) as mrc:
                header = mrc.header
                raw = mrc.data
                if raw is None:
                    raise ValueError("no data block")
                raw = np.asarray(raw)
                axis_order = (int(header.mapc), int(header.mapr), int(header.maps))
                starts_crs = (int(header.nxstart), int(header.nystart), int(header.nzstart))
                sampling = np.array([header.mx, header.my, header.mz], dtype=np.float64)
                cell = np.array(
                    [header.cella.x, header.cella.y, header.cella.z], dtype=np.float64
                ) if hasattr(header.cella, "x") else np.array(header.cella.tolist(), dtype=np.float64)
                angles = np.array(header.cellb.tolist(), dtype=np.float64)
                origin_field = np.array(header.origin.tolist(), dtype=np.float64)
                dims_crs = (int(header.nx), int(header.ny), int(header.nz))
                mode = int(header.mode)
    except InputError:
        raise
    except Exception as exc:  # mrcfile raises ValueError/OSError/EOFError on bad files
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(path, f"cannot read MRC/CCP4 map: {message}") from None

    if mode in (3, 4):
        # complex (Fourier-space) data: taking the real part would silently give nonsense
        raise InputError(path, f"MRC mode {mode} holds complex values (a Fourier transform), "
                         "not a real-space density map")
    for values, what in ((cell, "cell dimensions (CELLA)"), (angles, "cell angles (CELLB)"),
                         (origin_field, "origin"), (sampling, "sampling (MX/MY/MZ)")):
        if not np.all(np.isfinite(values)):
            raise InputError(path, f"NaN or infinite {what} in the header: {values.tolist()}")
    if min(dims_crs) <= 0:
        raise InputError(path, f"map has zero size (NX, NY, NZ = {dims_crs})")
    if sorted(axis_order) != [1, 2, 3]:
        raise InputError(path, f"invalid axis order MAPC/MAPR/MAPS = {axis_order}")
    if raw.ndim == 2:  # a single section
        raw = raw[np.newaxis]
    if raw.ndim != 3:
        raise InputError(path, f"expected a 3-D map, data have {raw.ndim} dimensions")

    # raw is indexed [section, row, column]; column/row/section run along the cell axes
    # axis_order (1=X, 2=Y, 3=Z). Reorder to [z, y, x].
    axis_of_position = {axis_order[0] - 1: 2, axis_order[1] - 1: 1, axis_order[2] - 1: 0}
    data = np.transpose(raw, axes=[axis_of_position[2], axis_of_position[1], axis_of_position[0]])
    starts_xyz = np.zeros(3)
    for position, axis in enumerate(axis_order):
        starts_xyz[axis - 1] = starts_crs[position]

    if np.any(sampling <= 0) or np.any(cell <= 0):
        # no usable cell: fall back to 1 Å voxels rather than divide by zero, but say so
        raise InputError(path, f"invalid cell/sampling in header (CELLA {cell.tolist()}, "
                         f"MX/MY/MZ {sampling.tolist()})")
    voxel_size = cell / sampling
    origin = origin_field if np.any(origin_field != 0.0) else starts_xyz * voxel_size
    return Map(np.ascontiguousarray(data, dtype=np.float32), origin, voxel_size, angles,
               source=str(path))


def read_mtz_map(path: str | PathLike, labels: tuple[str, str] | None = None,
                 sample_rate: float = 3.0) -> Map:
    """Fourier-transform MTZ map coefficients (F, PHI) to a map over the unit cell (gemmi)."""
    import gemmi

    path = Path(path)
    try:
        mtz = gemmi.read_mtz_file(str(path))
    except (RuntimeError, ValueError) as exc:
        raise InputError(path, f"cannot read MTZ file: {str(exc).splitlines()[0]}") from None
    present = {column.label for column in mtz.columns}
    if labels is None:
        labels = next((pair for pair in MTZ_LABEL_PAIRS if set(pair) <= present), None)
        if labels is None:
            raise InputError(path, f"no map-coefficient columns found (tried "
                             f"{', '.join('/'.join(p) for p in MTZ_LABEL_PAIRS)}; "
                             f"columns: {', '.join(sorted(present))})")
    missing = [label for label in labels if label not in present]
    if missing:
        raise InputError(path, f"column(s) {', '.join(missing)} not in MTZ "
                         f"(columns: {', '.join(sorted(present))})")
    grid = mtz.transform_f_phi_to_map(labels[0], labels[1], sample_rate=sample_rate)
    cell = grid.unit_cell
    angles = np.array([cell.alpha, cell.beta, cell.gamma])
    voxel_size = np.array([cell.a / grid.nu, cell.b / grid.nv, cell.c / grid.nw])
    data = np.ascontiguousarray(np.array(grid, copy=False).transpose(2, 1, 0))
    return Map(data, np.zeros(3), voxel_size, angles, source=str(path))


# --------------------------------------------------------------------------- writing


def write_map(density: Map, path: str | PathLike) -> None:
    """Write an MRC file (mode 2, axis order 1,2,3) atomically; see the module docstring."""
    import mrcfile

    path = Path(path)
    starts = density.origin / density.voxel_size
    whole_voxels = np.allclose(starts, np.round(starts), atol=1e-4)
    with atomic_path(path) as tmp:
        with mrcfile.new(str(tmp), overwrite=True) as mrc:
            mrc.set_data(density.data.astype(np.float32, copy=False))
            nx, ny, nz = density.shape_xyz
            mrc.header.cella = tuple(density.voxel_size * (nx, ny, nz))
            mrc.header.cellb = tuple(density.cell_angles)
            if whole_voxels:
                mrc.header.nxstart, mrc.header.nystart, mrc.header.nzstart = (
                    int(v) for v in np.round(starts)
                )
                mrc.header.origin = (0.0, 0.0, 0.0)
            else:
                mrc.header.origin = tuple(density.origin)
            mrc.update_header_stats()
