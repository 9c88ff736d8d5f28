"""A series of maps on one grid (3DVA frames, cryoDRGN volumes) as one zarr store.

Layout (details and rationale in ``docs/methods-map-series.md``)
-----------------------------------------------------------------
A zarr v3 group whose attributes carry the geometry shared by every frame::

    MAPS.zarr/
        zarr.json   attributes: varref_map_series (format version), voxel_size (x, y, z),
                    origin (x, y, z), cell_angles, resolution (Å or null), sources (file
                    names in frame order), varref_version
        maps/       float32 array (n_frames, nz, ny, nx), dimension names
                    (frame, z, y, x), chunks (1, cz, cy, cx), zstd-compressed, fill NaN

Format 2 stores frames larger than :data:`WHOLE_FRAME_MAX_VOXELS` in spatial chunks of
:data:`DEFAULT_CHUNK`³ voxels and smaller ones as one chunk per frame (format 1 always did
that; it is still read). A Dask worker refining frame k reads the box around its model
(:meth:`MapSeriesBase.frame_prepared`): only the chunks that box touches.

A store may be a URL (``s3://``, ``gs://``, ``https://``, ``memory://``; anything with
``://``) that zarr opens through fsspec (:mod:`varref.ensemble.urls`), so workers without a
shared filesystem read their frames from object storage.

The same interface (:class:`MapSeriesBase`) is offered over a plain list of map files
(:func:`map_series_from_files`), so commands can take ``MAPS.zarr`` or ``MAP...`` alike
through :func:`open_maps`. Both kinds pickle to a few hundred bytes (paths, not data).
"""

from __future__ import annotations

import abc
import contextlib
import operator
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from varref.ensemble import urls
from varref.ensemble.progress import Progress
from varref.errors import InputError
from varref.maps import MIN_PREPARED_MARGIN, Map, box_bounds, read_map

#: Attribute that marks a zarr group as a varref map series; its value is the format version.
MARKER = "varref_map_series"
#: Format version written (and the newest one read) by this module. 1: one chunk per frame;
#: 2: spatial chunks (1, cz, cy, cx) allowed, and a store may be written to a URL.
FORMAT_VERSION = 2
#: Edge, in voxels, of the cubic chunks of a spatially chunked frame (``chunk="auto"``).
DEFAULT_CHUNK = 64
#: Frames of at most this many voxels are stored as one chunk by default (measured in
#: ``benchmarks/map_chunks.py``, see docs/benchmarks.md): 128³, a 8 MiB frame.
WHOLE_FRAME_MAX_VOXELS = 128**3
#: Name of the 4-D array inside the group.
ARRAY_NAME = "maps"
#: zstd level: 5 is within a few % of level 9 on cryo-EM maps at a fraction of the time.
ZSTD_LEVEL = 5

# Consistency tolerances between frames of one series.
VOXEL_RTOL = 1e-4
ORIGIN_ATOL = 1e-3  # Å
ANGLE_ATOL = 1e-3  # degrees


# --------------------------------------------------------------------------- ordering


def natural_sort_key(text: str) -> tuple[Any, ...]:
    """Key that orders digit runs by value: ``frame_2`` before ``frame_10``.

    Splitting on digit runs always alternates text and number, so tuples of two keys compare
    like with like; the original string breaks ties (``frame_02`` vs ``frame_2``).
    """
    parts = re.split(r"(\d+)", str(text))
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), str(text)


def natural_sorted(paths: Sequence[str | PathLike]) -> list[str]:
    """The paths as strings, in natural order (see :func:`natural_sort_key`)."""
    return sorted((str(p) for p in paths), key=natural_sort_key)


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class _Geometry:
    """What every frame of a series must share."""

    shape: tuple[int, int, int]  # (nz, ny, nx)
    voxel_size: np.ndarray
    origin: np.ndarray
    cell_angles: np.ndarray

    @classmethod
    def of(cls, density: Map) -> "_Geometry":
        return cls(tuple(int(n) for n in density.data.shape), density.voxel_size.copy(),
                   density.origin.copy(), density.cell_angles.copy())

    def differences(self, density: Map) -> list[str]:
        """Human-readable list of what ``density`` does not share with this geometry."""
        other = _Geometry.of(density)
        found = []
        if other.shape != self.shape:
            found.append(f"grid {_xyz(other.shape[::-1], 'd')} instead of "
                         f"{_xyz(self.shape[::-1], 'd')} (x×y×z)")
        if not np.allclose(other.voxel_size, self.voxel_size, rtol=VOXEL_RTOL, atol=0.0):
            found.append(f"voxel size {_xyz(other.voxel_size)} Å instead of "
                         f"{_xyz(self.voxel_size)} Å")
        if not np.allclose(other.origin, self.origin, rtol=0.0, atol=ORIGIN_ATOL):
            found.append(f"origin {_xyz(other.origin)} Å instead of {_xyz(self.origin)} Å")
        if not np.allclose(other.cell_angles, self.cell_angles, rtol=0.0, atol=ANGLE_ATOL):
            found.append(f"cell angles {_xyz(other.cell_angles)}° instead of "
                         f"{_xyz(self.cell_angles)}°")
        return found

    def with_voxel_size(self, voxel_size: float | None) -> "_Geometry":
        """This geometry with every voxel ``voxel_size`` Å wide (None: unchanged).

        The origin keeps its position in voxels (it scales with the voxel size), as the MRC
        start indices do: an origin at 0 stays at 0.
        """
        if voxel_size is None:
            return self
        new = np.full(3, float(voxel_size))
        return _Geometry(self.shape, new, self.origin / self.voxel_size * new,
                         self.cell_angles.copy())

    def check(self, density: Map, path: str | PathLike, reference: str) -> None:
        """Raise :class:`InputError` naming ``path`` if ``density`` does not fit."""
        found = self.differences(density)
        if found:
            raise InputError(path, f"does not match {reference}: {'; '.join(found)} "
                             "(all maps of a series must share grid, voxel size, origin and "
                             "cell angles)")


def _xyz(values: Sequence[float], style: str = "g") -> str:
    if style == "d":
        return "x".join(str(int(v)) for v in values)
    return "(" + ", ".join(f"{float(v):.6g}" for v in values) + ")"


def _check_resolution(resolution: float | None) -> float | None:
    if resolution is None:
        return None
    resolution = float(resolution)
    if not np.isfinite(resolution) or resolution <= 0.0:
        raise InputError("--resolution", f"must be a positive number of Å, got {resolution}")
    return resolution


# --------------------------------------------------------------------------- interface


class MapSeriesBase(abc.ABC):
    """A sequence of maps on one grid; ``frame(k)`` gives map k.

    Implemented by :class:`MapSeries` (a zarr store) and :class:`FileMapSeries` (a list of
    map files). Instances are cheap to pickle: they carry paths, never map data.
    """

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def frame(self, k: int) -> Map:
        """Map ``k`` (0-based) with the series' geometry; reads only that map."""

    @property
    @abc.abstractmethod
    def voxel_size(self) -> np.ndarray:
        """(x, y, z) voxel spacing in Å, shared by all frames."""

    @property
    @abc.abstractmethod
    def origin(self) -> np.ndarray:
        """Cartesian (x, y, z) of voxel [0, 0, 0] in Å, shared by all frames."""

    @property
    @abc.abstractmethod
    def cell_angles(self) -> np.ndarray:
        """Unit-cell angles (90° for cryo-EM maps)."""

    @property
    @abc.abstractmethod
    def resolution(self) -> float | None:
        """Nominal resolution in Å, if known."""

    @property
    @abc.abstractmethod
    def sources(self) -> list[str]:
        """File name of each frame, in frame order."""

    @property
    @abc.abstractmethod
    def shape(self) -> tuple[int, int, int, int]:
        """(n_frames, nz, ny, nx)."""

    @property
    def components(self) -> list[str] | None:
        """Component (3DVA component, cryoDRGN directory) of every frame, or None.

        See :mod:`varref.ensemble.series_inputs`; chained refinement chains within each.
        """
        return None

    def frame_box(self, k: int, xyz: np.ndarray, margin: float = 5.0) -> Map:
        """``frame(k).box_around(xyz, margin)``, bit for bit; a zarr store reads only the
        chunks the box touches (:meth:`MapSeries.frame_box`), other series the whole frame."""
        return self.frame(k).box_around(xyz, margin)

    def frame_prepared(self, k: int, xyz: np.ndarray, margin: float = 5.0,
                       b: float | None = None) -> Map:
        """Frame ``k`` as refinement reads it: ``frame(k).prepared(xyz, margin, b)``, bit for
        bit (:meth:`varref.maps.Map.prepared`), reading only the box (:meth:`frame_box`).

        What the series tasks of ``varref series`` call, so that a worker holds the box
        around its model, never a whole frame of a large map.
        """
        Map(np.zeros((0, 0, 0), np.float32), self.origin, self.voxel_size, self.cell_angles,
            source=self._source(k)).require_orthogonal()
        return self.frame_box(k, xyz, max(margin, MIN_PREPARED_MARGIN)).conditioned(b)

    def _source(self, k: int) -> str:
        """What a frame's :class:`Map` names as its source (in messages)."""
        return self.sources[k]

    def __iter__(self) -> Iterator[Map]:
        for k in range(len(self)):
            yield self.frame(k)

    def _index(self, k: int) -> int:
        k = operator.index(k)  # ints and numpy integers; TypeError for floats
        if not 0 <= k < len(self):
            raise IndexError(f"frame {k} out of range for a series of {len(self)} maps")
        return k

    def __repr__(self) -> str:
        n, nz, ny, nx = self.shape
        return (f"<{type(self).__name__} {n} maps of {nx}x{ny}x{nz}, voxel "
                f"{_xyz(self.voxel_size)} Å>")


# --------------------------------------------------------------------------- zarr store


class MapSeries(MapSeriesBase):
    """A varref map-series zarr store, opened lazily (use :func:`open_map_series`).

    ``path`` is a directory or a URL (``s3://...``, ``memory://...``; see
    :mod:`varref.ensemble.urls`). Only ``path`` is pickled; the store is (re)opened on first
    use in each process, so a Dask worker that calls ``frame_prepared(k, ...)`` reads the group
    metadata and the chunks of frame k around its model, nothing else.
    """

    def __init__(self, path: str | PathLike):
        self.path = str(path)
        self._array: Any = None
        self._attrs: dict[str, Any] | None = None

    # pickling: the path only
    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])

    @property
    def is_url(self) -> bool:
        """True when the store is a URL rather than a local directory."""
        return urls.is_url(self.path)

    def _open_group(self):
        """The zarr group, read-only, after checking that something is there."""
        import zarr

        if self.is_url:
            if not urls.exists(self.path):
                raise InputError(self.path, "map series not found (no zarr.json there)")
            store = urls.zarr_store(self.path, read_only=True)
            try:
                return zarr.open_group(store, mode="r")
            except Exception as exc:  # noqa: BLE001 - backends raise their own errors
                raise urls.unreachable(self.path, exc, "map series") from None
        path = Path(self.path)
        if not path.exists():
            raise InputError(path, "map series not found")
        if not path.is_dir():
            raise InputError(path, "is a file, not a map-series store (a .zarr directory "
                             "written by `varref maps-to-zarr`)")
        try:
            return zarr.open_group(str(path), mode="r")
        except Exception:  # zarr raises several types for a directory that is no zarr group
            raise InputError(path, "not a varref map series (no zarr group there); create "
                             "one with `varref maps-to-zarr`") from None

    def _open(self) -> None:
        if self._array is not None:
            return
        import zarr

        path = self.path
        group = self._open_group()
        attrs = dict(group.attrs)
        version = attrs.get(MARKER)
        if version is None:
            raise InputError(path, f"zarr store is not a varref map series (no '{MARKER}' "
                             "attribute); create one with `varref maps-to-zarr`")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise InputError(path, f"map-series format {version!r} is newer than this varref "
                             f"reads ({FORMAT_VERSION}); upgrade varref")
        try:
            array = group[ARRAY_NAME]
        except KeyError:
            raise InputError(path, f"map series has no '{ARRAY_NAME}' array (incomplete "
                             "copy?)") from None
        if not isinstance(array, zarr.Array) or array.ndim != 4 or array.dtype != np.float32:
            raise InputError(path, f"'{ARRAY_NAME}' is not a 4-D float32 array")
        if array.chunks[0] != 1:
            raise InputError(path, f"'{ARRAY_NAME}' chunks {array.chunks} hold several frames; "
                             "a map series keeps one frame per chunk")
        sources = attrs.get("sources")
        if not isinstance(sources, list) or len(sources) != array.shape[0]:
            raise InputError(path, f"'sources' attribute does not list {array.shape[0]} maps")
        for key in ("voxel_size", "origin", "cell_angles"):
            if np.shape(attrs.get(key)) != (3,):
                raise InputError(path, f"attribute '{key}' is missing or not 3 numbers")
        self._attrs, self._array = attrs, array

    @property
    def _meta(self) -> dict[str, Any]:
        self._open()
        assert self._attrs is not None
        return self._attrs

    def __len__(self) -> int:
        self._open()
        return int(self._array.shape[0])

    @property
    def shape(self) -> tuple[int, int, int, int]:
        self._open()
        return tuple(int(n) for n in self._array.shape)  # type: ignore[return-value]

    @property
    def chunks(self) -> tuple[int, int, int, int]:
        """Chunk shape of the ``maps`` array: (1, nz, ny, nx) for one chunk per frame."""
        self._open()
        return tuple(int(n) for n in self._array.chunks)  # type: ignore[return-value]

    @property
    def format_version(self) -> int:
        """The store's format version (:data:`FORMAT_VERSION` or older)."""
        return int(self._meta[MARKER])

    @property
    def voxel_size(self) -> np.ndarray:
        return np.asarray(self._meta["voxel_size"], dtype=np.float64)

    @property
    def origin(self) -> np.ndarray:
        return np.asarray(self._meta["origin"], dtype=np.float64)

    @property
    def cell_angles(self) -> np.ndarray:
        return np.asarray(self._meta["cell_angles"], dtype=np.float64)

    @property
    def resolution(self) -> float | None:
        value = self._meta.get("resolution")
        return None if value is None else float(value)

    @property
    def sources(self) -> list[str]:
        return [str(s) for s in self._meta["sources"]]

    @property
    def components(self) -> list[str] | None:
        value = self._meta.get("components")
        return None if value is None else [str(c) for c in value]

    def _source(self, k: int) -> str:
        return f"{self.path}[{k}] ({self.sources[k]})"

    def chunk_keys(self, k: int, lower: Sequence[int] = (0, 0, 0),
                   upper: Sequence[int] | None = None) -> list[str]:
        """Store keys of the chunks of frame ``k`` that the voxel range touches.

        ``lower``/``upper`` are (ix, iy, iz), the first voxel and one past the last, as
        :func:`varref.maps.box_bounds` returns (default: the whole frame). Keys use zarr v3's
        default ``c/`` encoding relative to the group: ``maps/c/k/iz/iy/ix``.
        """
        _, cz, cy, cx = self.chunks
        _, nz, ny, nx = self.shape
        upper = (nx, ny, nz) if upper is None else upper
        ranges = [range(lo // c, -(-hi // c)) for lo, hi, c in
                  zip(lower[::-1], upper[::-1], (cz, cy, cx))]
        return [f"{ARRAY_NAME}/c/{k}/{i}/{j}/{m}"
                for i in ranges[0] for j in ranges[1] for m in ranges[2]]

    def _read(self, k: int, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
        """Voxels ``lower`` .. ``upper`` (ix, iy, iz; upper exclusive) of frame ``k``, checked.

        Raises
        ------
        InputError
            A chunk of the range cannot be decoded, or is missing: the array's fill value is
            NaN and input maps never contain NaN, so NaN here means a chunk was lost; the
            message names the lost chunk(s).
        """
        where = f"{self.path}[{k}]"
        (x0, y0, z0), (x1, y1, z1) = lower, upper
        try:
            data = self._array[k, z0:z1, y0:y1, x0:x1]
        except Exception as exc:  # a damaged chunk fails in the codec (zstd checksum, size)
            raise InputError(where, f"cannot read frame {k} ({self.sources[k]}): "
                             f"{type(exc).__name__}: {exc}") from None
        missing = np.isnan(data)
        if missing.any():
            _, cz, cy, cx = self.chunks
            voxels = np.argwhere(missing) + np.array([z0, y0, x0])
            lost = sorted({f"{ARRAY_NAME}/c/{k}/{iz // cz}/{iy // cy}/{ix // cx}"
                           for iz, iy, ix in voxels})
            shown = ", ".join(lost[:4]) + (f" and {len(lost) - 4} more" if len(lost) > 4 else "")
            raise InputError(where, f"frame {k} ({self.sources[k]}) is missing from the store "
                             f"(incomplete copy?): chunk(s) {shown} lost")
        return np.ascontiguousarray(data)

    def frame(self, k: int) -> Map:
        """Map ``k``: reads the chunks of frame k only.

        Raises
        ------
        IndexError
            ``k`` outside ``0 .. len - 1``.
        InputError
            A chunk is missing or corrupt (see :meth:`_read`).
        """
        self._open()
        k = self._index(k)
        _, nz, ny, nx = self.shape
        data = self._read(k, np.zeros(3, int), np.array((nx, ny, nz)))
        return Map(data, self.origin, self.voxel_size, self.cell_angles, source=self._source(k))

    def frame_box(self, k: int, xyz: np.ndarray, margin: float = 5.0) -> Map:
        """``frame(k).box_around(xyz, margin)``, bit for bit, reading only the chunks that the
        box touches (and checking those for loss).

        Raises
        ------
        IndexError, InputError
            As :meth:`frame`; also when no point of ``xyz`` lies inside the map.
        """
        self._open()
        k = self._index(k)
        _, nz, ny, nx = self.shape
        lower, upper = box_bounds(self.origin, self.voxel_size, (nx, ny, nz), xyz, margin,
                                  self._source(k))
        data = self._read(k, lower, upper)
        return Map(data, self.origin + lower * self.voxel_size, self.voxel_size,
                   self.cell_angles, source=self._source(k))


def open_map_series(path: str | PathLike) -> MapSeries:
    """Open a map series written by :func:`write_map_series`, checking it is one.

    ``path`` is a directory or a URL (``s3://bucket/maps.zarr``; :mod:`varref.ensemble.urls`).
    Only metadata is read here; frames are read on demand by :meth:`MapSeries.frame` and
    :meth:`MapSeries.frame_prepared`.

    Raises
    ------
    InputError
        The path does not exist or is not a varref map series; a URL whose fsspec backend
        is not installed (the package is named) or that cannot be reached.
    """
    series = MapSeries(path)
    series._open()  # fail here, in the client, rather than later on a worker
    return series


def is_map_series(path: str | PathLike) -> bool:
    """True if ``path`` is a directory (or URL) holding a varref map series."""
    if not urls.is_url(path) and not Path(path).is_dir():
        return False
    try:
        MapSeries(path)._open()
    except InputError:
        return False
    return True


# --------------------------------------------------------------------------- file list


class FileMapSeries(MapSeriesBase):
    """A list of map files behaving like a :class:`MapSeries`; ``frame(k)`` reads file k.

    Build with :func:`map_series_from_files`, which checks that the maps agree. Pickles the
    paths and the (small) shared geometry.
    """

    def __init__(self, paths: Sequence[str | PathLike], geometry: _Geometry,
                 resolution: float | None = None, voxel_size: float | None = None,
                 components: Sequence[str] | None = None,
                 labels: Sequence[str] | None = None):
        self.paths = [str(p) for p in paths]
        self._header_geometry = geometry  # what every file's header must agree with
        self._geometry = geometry.with_voxel_size(voxel_size)  # what the series reports
        self._resolution = resolution
        self._components = None if components is None else [str(c) for c in components]
        self._labels = None if labels is None else [str(c) for c in labels]
        for name, values in (("components", self._components), ("labels", self._labels)):
            if values is not None and len(values) != len(self.paths):
                raise ValueError(f"{len(values)} {name} for {len(self.paths)} maps")

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), *self._geometry.shape)

    @property
    def voxel_size(self) -> np.ndarray:
        return self._geometry.voxel_size.copy()

    @property
    def origin(self) -> np.ndarray:
        return self._geometry.origin.copy()

    @property
    def cell_angles(self) -> np.ndarray:
        return self._geometry.cell_angles.copy()

    @property
    def resolution(self) -> float | None:
        return self._resolution

    @property
    def sources(self) -> list[str]:
        if self._labels is not None:
            return list(self._labels)
        return [Path(p).name for p in self.paths]

    @property
    def components(self) -> list[str] | None:
        return None if self._components is None else list(self._components)

    def frame(self, k: int) -> Map:
        """Read file ``k``; :class:`InputError` if it no longer matches the series."""
        k = self._index(k)
        density = read_map(self.paths[k])
        # the files may have changed between opening (client) and reading (worker)
        self._header_geometry.check(density, self.paths[k], "the series as opened")
        # report the series geometry exactly, as the zarr store does
        return Map(density.data, self._geometry.origin, self._geometry.voxel_size,
                   self._geometry.cell_angles, source=density.source)


def map_series_from_files(paths: Sequence[str | PathLike], resolution: float | None = None,
                          progress: bool = False, voxel_size: float | None = None,
                          components: Sequence[str] | None = None,
                          labels: Sequence[str] | None = None) -> FileMapSeries:
    """A series over map files, in the given order, after checking that they agree.

    Every file is read once here (one at a time) to check grid, voxel size, origin and cell
    angles against the first, by the same rules as :func:`write_map_series`. ``voxel_size``
    (Å) then replaces the headers' value for every frame (origin kept in voxels);
    ``components`` and ``labels`` (one per map) are reported as the series' ``components``
    and ``sources`` (:mod:`varref.ensemble.series_inputs` makes them).

    Raises
    ------
    InputError
        No paths, an unreadable map, or a map that differs from the first (named).
    """
    paths = [str(p) for p in paths]
    if not paths:
        raise InputError("maps", "no maps given")
    resolution = _check_resolution(resolution)
    geometry = None
    with Progress(len(paths), "checking maps", progress) as bar:
        for path in paths:
            density = read_map(path)
            if geometry is None:
                geometry = _Geometry.of(density)
            else:
                geometry.check(density, path, Path(paths[0]).name)
            bar.advance()
    assert geometry is not None
    return FileMapSeries(paths, geometry, resolution, voxel_size=voxel_size,
                         components=components, labels=labels)


def open_maps(inputs: Sequence[str | PathLike], resolution: float | None = None
              ) -> MapSeriesBase:
    """``MAPS.zarr`` or ``MAP...`` as a series: what commands taking a map series call.

    Parameters
    ----------
    inputs
        Either one map-series store (a path ending in ``.zarr``, a directory carrying the
        series marker, or a URL), or one or more map files, used in the given order.
    resolution
        For map files: the nominal resolution to report. A store keeps its own; this is
        ignored for it.

    Raises
    ------
    InputError
        Nothing given, a store mixed with other inputs, or inconsistent maps.
    """
    inputs = [str(p) for p in inputs]
    if not inputs:
        raise InputError("maps", "no maps given")
    stores = [p for p in inputs
              if urls.is_url(p) or p.rstrip("/").endswith(".zarr") or Path(p).is_dir()]
    if stores:
        if len(inputs) > 1:
            raise InputError(stores[0], "a map-series store must be given alone, not with "
                             "other maps")
        return open_map_series(stores[0])
    return map_series_from_files(inputs, resolution=resolution)


# --------------------------------------------------------------------------- writing


def chunk_shape(grid: Sequence[int], chunk: int | str | None = "auto") -> tuple[int, int, int, int]:
    """Chunk shape (1, cz, cy, cx) of a series of frames of ``grid`` (nz, ny, nx) voxels.

    Parameters
    ----------
    grid
        (nz, ny, nx).
    chunk
        ``"auto"`` (or None): one chunk per frame up to :data:`WHOLE_FRAME_MAX_VOXELS` voxels,
        else cubes of :data:`DEFAULT_CHUNK`; ``"frame"``: one chunk per frame; an int N:
        cubes of N voxels (clipped to the grid).

    Examples
    --------
    >>> chunk_shape((40, 40, 40)), chunk_shape((256, 256, 256))
    ((1, 40, 40, 40), (1, 64, 64, 64))
    >>> chunk_shape((256, 256, 256), "frame"), chunk_shape((100, 50, 20), 32)
    ((1, 256, 256, 256), (1, 32, 32, 20))
    """
    nz, ny, nx = (int(n) for n in grid)
    if chunk is None or chunk == "auto":
        chunk = "frame" if nz * ny * nx <= WHOLE_FRAME_MAX_VOXELS else DEFAULT_CHUNK
    if chunk == "frame":
        return (1, nz, ny, nx)
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise InputError("--chunk", f"must be 'auto', 'frame' or a number of voxels >= 1, "
                         f"got {chunk!r}")
    edge = int(chunk)
    return (1, min(edge, nz), min(edge, ny), min(edge, nx))


def write_map_series(paths: Sequence[str | PathLike], output: str | PathLike,
                     resolution: float | None = None, progress: bool = True,
                     voxel_size: float | None = None, components: Sequence[str] | None = None,
                     labels: Sequence[str] | None = None,
                     chunk: int | str | None = "auto") -> None:
    """Store maps (one grid) as one zarr map series, in the given order, atomically.

    Maps are read one at a time, so memory holds one map whatever the series length.

    Parameters
    ----------
    paths
        Map files (anything :func:`varref.maps.read_map` reads), in frame order.
    output
        Store directory to create, conventionally ``*.zarr``, or a URL
        (:func:`write_series_frames` says what differs there). An existing varref map
        series there is replaced; anything else there is an error.
    resolution
        Nominal resolution in Å, stored as an attribute (None: unknown).
    progress
        Print a frame counter on stderr.
    voxel_size
        Voxel size (Å) stored instead of the headers' (origin kept in voxels); the headers'
        value is kept as the ``header_voxel_size`` attribute.
    components, labels
        One per map: the component of each frame (stored as the ``components`` attribute)
        and the frame labels (``sources``; default the file names).
    chunk
        Chunk layout of each frame (:func:`chunk_shape`).

    Raises
    ------
    InputError
        No maps, an unreadable map, a map whose grid, voxel size (rtol 1e-4), origin
        (atol 1e-3 Å) or cell angles differ from the first one's (named in the message), or
        an output path that exists and is not a map series. Nothing is left at ``output``.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise InputError(output, "no input maps given")
    for name, values in (("components", components), ("labels", labels)):
        if values is not None and len(values) != len(paths):
            raise ValueError(f"{len(values)} {name} for {len(paths)} maps")
    resolution = _check_resolution(resolution)
    _check_output(output)
    first = read_map(paths[0])
    geometry = _Geometry.of(first)

    def maps() -> Iterator[Map]:
        yield first
        for path in paths[1:]:
            density = read_map(path)
            geometry.check(density, path, paths[0].name)
            yield density

    extra = {} if voxel_size is None else {"header_voxel_size": geometry.voxel_size.tolist()}
    write_series_frames(maps(), output, sources=[p.name for p in paths] if labels is None
                        else [str(x) for x in labels], resolution=resolution,
                        voxel_size=voxel_size, components=components, chunk=chunk,
                        progress=progress, attributes=extra)


def write_series_frames(frames: Iterable[Map], output: str | PathLike, *, sources: Sequence[str],
                        resolution: float | None = None, voxel_size: float | None = None,
                        components: Sequence[str] | None = None,
                        chunk: int | str | None = "auto", progress: bool = False,
                        attributes: dict[str, Any] | None = None) -> None:
    """Store maps given as :class:`~varref.maps.Map` objects (e.g. generated one at a time)
    as a map series; what :func:`write_map_series` does after reading the files.

    ``frames`` is consumed one map at a time (a generator keeps one frame in memory); there
    must be exactly ``len(sources)`` of them, all on the first one's grid (checked). The
    geometry stored is the first frame's (``voxel_size`` replaces its voxel size, the origin
    kept in voxels).

    A local ``output`` is built in a hidden directory beside it and renamed into place. A
    URL ``output`` (object storage has no atomic rename) is written in place with the
    series marker attribute last, so no reader takes a half-written store for a series; on
    failure everything written there is deleted, and an existing series there is deleted
    before writing starts.

    Raises
    ------
    InputError
        A frame off the first one's grid, too few or too many frames, an output that exists
        and is not a map series, an unreachable URL.
    """
    import zarr
    from zarr.codecs import ZstdCodec

    from varref import __version__

    sources = [str(x) for x in sources]
    n_frames = len(sources)
    if n_frames == 0:
        raise InputError(output, "no input maps given")
    resolution = _check_resolution(resolution)
    if components is not None and len(components) != n_frames:
        raise ValueError(f"{len(components)} components for {n_frames} maps")
    _check_output(output)
    iterator = iter(frames)
    try:
        first = next(iterator)
    except StopIteration:
        raise InputError(output, "no input maps given") from None
    geometry = _Geometry.of(first)
    stored = geometry.with_voxel_size(voxel_size)
    nz, ny, nx = geometry.shape
    chunks = chunk_shape(geometry.shape, chunk)
    marker = {MARKER: FORMAT_VERSION}
    attributes = {
        "voxel_size": stored.voxel_size.tolist(),
        "origin": stored.origin.tolist(),
        "cell_angles": geometry.cell_angles.tolist(),
        "resolution": resolution,
        "sources": sources,
        "varref_version": __version__,
        **(attributes or {}),
    }
    if components is not None:
        attributes["components"] = [str(c) for c in components]
    if voxel_size is not None and "header_voxel_size" not in attributes:
        attributes["header_voxel_size"] = geometry.voxel_size.tolist()
    with _output_store(output) as (target, is_url), Progress(n_frames, "writing maps",
                                                              progress) as bar:
        # a URL gets its marker last (no rename there); a local store is renamed in whole
        group = zarr.open_group(target, mode="w", zarr_format=3,
                                attributes=attributes if is_url else {**marker, **attributes})
        array = group.create_array(
            ARRAY_NAME, shape=(n_frames, nz, ny, nx), chunks=chunks,
            dtype="float32",
            # zstd alone beats blosc+shuffle on cryo-EM maps (masked solvent compresses
            # to nothing); the frame checksum turns silent corruption into a read error
            compressors=ZstdCodec(level=ZSTD_LEVEL, checksum=True),
            # NaN never occurs in an input map (read_map rejects it), so NaN on reading
            # means a chunk file went missing, which zarr would otherwise fill silently
            fill_value=np.nan,
            dimension_names=("frame", "z", "y", "x"),
        )
        count = 0
        for k, density in enumerate(_chain(first, iterator)):
            if k >= n_frames:
                raise InputError(output, f"more maps than the {n_frames} sources named")
            if k > 0:
                geometry.check(density, density.source or f"map {k}", sources[0])
            if np.isnan(density.data).any():  # NaN is the store's mark of a lost chunk
                raise InputError(density.source or f"map {k}", "contains NaN values")
            array[k] = density.data
            count += 1
            bar.advance()
            del density
        if count != n_frames:
            raise InputError(output, f"{count} maps for the {n_frames} sources named")
        if is_url:
            group.attrs.update(marker)


def _chain(first: Map, rest: Iterator[Map]) -> Iterator[Map]:
    yield first
    yield from rest


def _check_output(output: str | PathLike) -> None:
    """Refuse an existing output that is not a map series (never overwritten)."""
    if urls.is_url(output):
        if urls.exists(str(output)) and not is_map_series(output):
            raise InputError(output, "exists and is not a varref map series; refusing to "
                             "overwrite it")
        return
    if Path(output).exists() and not is_map_series(output):
        raise InputError(output, "exists and is not a varref map series; refusing to "
                         "overwrite it")


@contextlib.contextmanager
def _output_store(output: str | PathLike) -> Iterator[tuple[Any, bool]]:
    """Yield (zarr store or directory to write, is it a URL); see :func:`write_series_frames`."""
    if not urls.is_url(output):
        with _atomic_directory(Path(output)) as tmp:
            yield str(tmp), False
        return
    url = str(output)
    urls.remove(url)  # an old series (checked by the caller): object storage cannot swap
    try:
        yield urls.zarr_store(url, read_only=False), True
    except BaseException:
        urls.remove(url)
        raise


@contextlib.contextmanager
def _atomic_directory(destination: Path) -> Iterator[Path]:
    """Yield an empty directory next to ``destination``; move it into place on success.

    On failure the temporary directory is removed and ``destination`` is untouched. An
    existing ``destination`` (checked by the caller to be a map series) is replaced: moved
    aside, the new one renamed in, the old one deleted.
    """
    parent = destination.parent if str(destination.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(destination, f"output directory {parent} does not exist")
    tmp = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".tmp", dir=parent))
    try:
        yield tmp
        umask = os.umask(0)  # mkdtemp creates 0700; give what a plain mkdir would
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        if destination.exists():
            old = parent / f".{destination.name}.{uuid.uuid4().hex[:8]}.old"
            os.rename(destination, old)
            try:
                os.rename(tmp, destination)
            except BaseException:
                os.rename(old, destination)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, destination)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
