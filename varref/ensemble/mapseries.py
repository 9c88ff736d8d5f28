"""A series of maps on one grid (3DVA frames, cryoDRGN volumes) as one zarr store.

Layout (details and rationale in ``docs/methods-map-series.md``)
-----------------------------------------------------------------
A zarr v3 group whose attributes carry the geometry shared by every frame::

    MAPS.zarr/
        zarr.json   attributes: varref_map_series (format version), voxel_size (x, y, z),
                    origin (x, y, z), cell_angles, resolution (Å or null), sources (file
                    names in frame order), varref_version
        maps/       float32 array (n_frames, nz, ny, nx), dimension names
                    (frame, z, y, x), chunks (1, nz, ny, nx), zstd-compressed, fill NaN

One chunk per map, so a Dask worker refining frame k reads exactly one chunk.

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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from varref.ensemble.progress import Progress
from varref.errors import InputError
from varref.maps import Map, read_map

#: Attribute that marks a zarr group as a varref map series; its value is the format version.
MARKER = "varref_map_series"
#: Format version written (and the newest one read) by this module.
FORMAT_VERSION = 1
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

    Only the path is pickled; the store is (re)opened on first use in each process, so a
    Dask worker that calls ``frame(k)`` reads the group metadata and chunk k, nothing else.
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

    def _open(self) -> None:
        if self._array is not None:
            return
        import zarr

        path = Path(self.path)
        if not path.exists():
            raise InputError(path, "map series not found")
        if not path.is_dir():
            raise InputError(path, "is a file, not a map-series store (a .zarr directory "
                             "written by `varref maps-to-zarr`)")
        try:
            group = zarr.open_group(str(path), mode="r")
        except Exception:  # zarr raises several types for a directory that is no zarr group
            raise InputError(path, "not a varref map series (no zarr group there); create "
                             "one with `varref maps-to-zarr`") from None
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

    def frame(self, k: int) -> Map:
        """Map ``k``: reads chunk k of the ``maps`` array only.

        Raises
        ------
        IndexError
            ``k`` outside ``0 .. len - 1``.
        InputError
            The chunk is missing or corrupt (the array's fill value is NaN and input maps
            never contain NaN, so NaN here means the chunk file was lost).
        """
        self._open()
        k = self._index(k)
        where = f"{self.path}[{k}]"
        try:
            data = self._array[k]
        except Exception as exc:  # a damaged chunk fails in the codec (zstd checksum, size)
            raise InputError(where, f"cannot read frame {k} ({self.sources[k]}): "
                             f"{type(exc).__name__}: {exc}") from None
        if np.isnan(data).any():
            raise InputError(where, f"frame {k} ({self.sources[k]}) is missing from the store "
                             "(incomplete copy?)")
        return Map(data, self.origin, self.voxel_size, self.cell_angles,
                   source=f"{where} ({self.sources[k]})")


def open_map_series(path: str | PathLike) -> MapSeries:
    """Open a map series written by :func:`write_map_series`, checking it is one.

    Only metadata is read here; frames are read on demand by :meth:`MapSeries.frame`.

    Raises
    ------
    InputError
        The path does not exist or is not a varref map series.
    """
    series = MapSeries(path)
    series._open()  # fail here, in the client, rather than later on a worker
    return series


def is_map_series(path: str | PathLike) -> bool:
    """True if ``path`` is a directory holding a varref map series."""
    if not Path(path).is_dir():
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
        Either one map-series store (a path ending in ``.zarr``, or a directory carrying the
        series marker), or one or more map files, used in the given order.
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
    stores = [p for p in inputs if p.rstrip("/").endswith(".zarr") or Path(p).is_dir()]
    if stores:
        if len(inputs) > 1:
            raise InputError(stores[0], "a map-series store must be given alone, not with "
                             "other maps")
        return open_map_series(stores[0])
    return map_series_from_files(inputs, resolution=resolution)


# --------------------------------------------------------------------------- writing


def write_map_series(paths: Sequence[str | PathLike], output: str | PathLike,
                     resolution: float | None = None, progress: bool = True,
                     voxel_size: float | None = None, components: Sequence[str] | None = None,
                     labels: Sequence[str] | None = None) -> None:
    """Store maps (one grid) as one zarr map series, in the given order, atomically.

    Maps are read one at a time, so memory holds one map whatever the series length.

    Parameters
    ----------
    paths
        Map files (anything :func:`varref.maps.read_map` reads), in frame order.
    output
        Store directory to create, conventionally ``*.zarr``. An existing varref map series
        there is replaced; anything else there is an error.
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

    Raises
    ------
    InputError
        No maps, an unreadable map, a map whose grid, voxel size (rtol 1e-4), origin
        (atol 1e-3 Å) or cell angles differ from the first one's (named in the message), or
        an output path that exists and is not a map series. Nothing is left at ``output``.
    """
    import zarr
    from zarr.codecs import ZstdCodec

    from varref import __version__

    paths = [Path(p) for p in paths]
    output = Path(output)
    if not paths:
        raise InputError(output, "no input maps given")
    resolution = _check_resolution(resolution)
    if output.exists() and not is_map_series(output):
        raise InputError(output, "exists and is not a varref map series; refusing to "
                         "overwrite it")
    for name, values in (("components", components), ("labels", labels)):
        if values is not None and len(values) != len(paths):
            raise ValueError(f"{len(values)} {name} for {len(paths)} maps")
    first = read_map(paths[0])
    geometry = _Geometry.of(first)
    stored = geometry.with_voxel_size(voxel_size)
    nz, ny, nx = geometry.shape
    attributes = {
        MARKER: FORMAT_VERSION,
        "voxel_size": stored.voxel_size.tolist(),
        "origin": stored.origin.tolist(),
        "cell_angles": geometry.cell_angles.tolist(),
        "resolution": resolution,
        "sources": [p.name for p in paths] if labels is None else [str(x) for x in labels],
        "varref_version": __version__,
    }
    if components is not None:
        attributes["components"] = [str(c) for c in components]
    if voxel_size is not None:
        attributes["header_voxel_size"] = geometry.voxel_size.tolist()
    with _atomic_directory(output) as tmp, Progress(len(paths), "writing maps",
                                                     progress) as bar:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3, attributes=attributes)
        array = group.create_array(
            ARRAY_NAME, shape=(len(paths), nz, ny, nx), chunks=(1, nz, ny, nx),
            dtype="float32",
            # zstd alone beats blosc+shuffle on cryo-EM maps (masked solvent compresses
            # to nothing); the frame checksum turns silent corruption into a read error
            compressors=ZstdCodec(level=ZSTD_LEVEL, checksum=True),
            # NaN never occurs in an input map (read_map rejects it), so NaN on reading
            # means a chunk file went missing, which zarr would otherwise fill silently
            fill_value=np.nan,
            dimension_names=("frame", "z", "y", "x"),
        )
        array[0] = first.data
        bar.advance()
        del first
        for k, path in enumerate(paths[1:], start=1):
            density = read_map(path)
            geometry.check(density, path, paths[0].name)
            array[k] = density.data
            bar.advance()


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
