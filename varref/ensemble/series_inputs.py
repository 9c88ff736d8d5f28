"""The maps of a variability series as users have them: files, directories, globs, lists.

:func:`collect_series_inputs` turns what a user gives into an ordered list of frames, each
with a label, a ``component`` (the group it belongs to, or ``""``) and its index within the
component. Recognised layouts:

cryoSPARC 3DVA (``*_component_NNN_frame_MMM.mrc``)
    component ``component_NNN``; frames ordered by (component number, frame number), as
    numbers (``frame_2`` before ``frame_10``).
cryoDRGN ``analyze`` (``pc1/vol_000.mrc``, ``kmeans20/vol_007.mrc``)
    a map in a sub-directory of a directory given on the command line (or any
    ``vol_NNN.mrc``) takes its directory's name as component; volumes in numeric order.
RELION classes (``run_it025_class001.mrc``)
    ordered by class number (then iteration), whatever the order given.
a text file listing maps
    one path per line, ``#`` starts a comment, blank lines skipped; relative paths are
    relative to the list file. Entries may be files, directories or globs.
anything else
    natural order of the paths (digit runs as numbers); ``keep_order`` keeps the order given.

Components are ordered by their natural order (``component_000`` < ``component_001``,
``kmeans20`` < ``pc1`` < ``pc2``). In chained refinement each component is its own chain
(:func:`chained_walk`): a component's motion does not continue into the next component.
Series geometry (one grid for every frame) is checked by
:func:`varref.ensemble.mapseries.map_series_from_files`; the voxel size can be overridden for
every frame (cryoDRGN writes 1 Å when it had no CTF file), and :func:`check_voxel_size` warns
when the header's value looks wrong for the model.
"""

from __future__ import annotations

import glob
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

from varref.ensemble.mapseries import natural_sort_key
from varref.errors import InputError

log = logging.getLogger(__name__)

#: File suffixes taken as maps when a directory is given.
MAP_SUFFIXES = (".mrc", ".map", ".ccp4", ".mrc.gz", ".map.gz")
#: File suffixes read as lists of map paths.
LIST_SUFFIXES = (".txt", ".lst", ".list")

_3DVA = re.compile(r"_component_(\d+)_frame_(\d+)\.", re.IGNORECASE)
_RELION = re.compile(r"_it(\d+)_class(\d+)\.", re.IGNORECASE)
_CRYODRGN = re.compile(r"^vol_(\d+)\.", re.IGNORECASE)
_GLOB = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class SeriesFrame:
    """One map of a series.

    Attributes
    ----------
    path : str
        The map file.
    component : str
        The group the frame belongs to (3DVA component, cryoDRGN directory); ``""`` if none.
    layout : str
        How it was recognised: ``"3dva"``, ``"cryodrgn"``, ``"relion"`` or ``"plain"``.
    key : tuple
        Sort key within its component (frame, volume or class number).
    """

    path: str
    component: str
    layout: str
    key: tuple

    @property
    def label(self) -> str:
        """File name, prefixed by the component when the name alone is ambiguous."""
        name = Path(self.path).name
        if self.layout == "cryodrgn" and self.component:
            return f"{self.component}/{name}"
        return name


@dataclass(frozen=True)
class SeriesInputs:
    """The ordered frames of a series (:func:`collect_series_inputs`).

    Attributes
    ----------
    frames : tuple of SeriesFrame
        In frame order: components in natural order, frames in numeric order within each.
    voxel_size : float or None
        Voxel size (Å) that replaces every map header's, or None to keep the headers'.
    """

    frames: tuple[SeriesFrame, ...]
    voxel_size: float | None = None

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def paths(self) -> list[str]:
        """Map file of every frame, in frame order."""
        return [f.path for f in self.frames]

    @property
    def labels(self) -> list[str]:
        """Label of every frame (file name; ``pc1/vol_000.mrc`` for cryoDRGN)."""
        return [f.label for f in self.frames]

    @property
    def components(self) -> list[str] | None:
        """Component of every frame, or None when no frame has one."""
        if not any(f.component for f in self.frames):
            return None
        return [f.component for f in self.frames]

    def open(self, resolution: float | None = None, progress: bool = False):
        """The frames as a map series (every map read once to check they share one grid).

        Returns
        -------
        varref.ensemble.mapseries.FileMapSeries
            With ``components`` and ``sources`` (labels) of these inputs.
        """
        from varref.ensemble.mapseries import map_series_from_files

        return map_series_from_files(self.paths, resolution=resolution, progress=progress,
                                     voxel_size=self.voxel_size, components=self.components,
                                     labels=self.labels)


def collect_series_inputs(inputs: Sequence[str | PathLike], *, keep_order: bool = False,
                          voxel_size: float | None = None) -> SeriesInputs:
    """Turn files, directories, globs and list files into the ordered frames of a series.

    Parameters
    ----------
    inputs
        Map files; directories (their map files, and the map files of their immediate
        sub-directories, each sub-directory a component: cryoDRGN ``analyze`` output);
        glob patterns (expanded here, for shells that did not); text files (``.txt``,
        ``.lst``, ``.list``) listing one map per line (``#`` comments; paths relative to
        the list file).
    keep_order
        Keep the order given (after expanding directories and globs naturally) instead of
        ordering by component and frame number.
    voxel_size
        Voxel size in Å to use for every frame instead of the map headers' (``--voxel-size``).

    Returns
    -------
    SeriesInputs

    Raises
    ------
    InputError
        Nothing given, a path that does not exist, a glob or directory without maps, an
        empty list file, the same map twice, or a bad voxel size.

    Examples
    --------
    >>> inputs = collect_series_inputs(["J42_component_001_frame_10.mrc",
    ...                                 "J42_component_001_frame_2.mrc",
    ...                                 "J42_component_000_frame_0.mrc"])  # doctest: +SKIP
    >>> inputs.labels, inputs.components                                   # doctest: +SKIP
    (['J42_component_000_frame_0.mrc', 'J42_component_001_frame_2.mrc',
      'J42_component_001_frame_10.mrc'], ['component_000', 'component_001', 'component_001'])
    """
    if voxel_size is not None:
        voxel_size = float(voxel_size)
        if not np.isfinite(voxel_size) or voxel_size <= 0.0:
            raise InputError("--voxel-size", f"must be a positive number of Å, got {voxel_size}")
    items = [str(p) for p in inputs]
    if not items:
        raise InputError("maps", "no maps given")
    found: list[tuple[str, str]] = []  # (path, directory component)
    for item in items:
        found.extend(_expand(item, allow_list=True))
    seen: dict[str, str] = {}
    for path, _ in found:
        resolved = str(Path(path).resolve())
        if resolved in seen:
            raise InputError(path, f"given twice (also as {seen[resolved]})")
        seen[resolved] = path
    frames = [_classify(path, component) for path, component in found]
    if not keep_order:
        frames.sort(key=lambda f: (natural_sort_key(f.component), f.key, natural_sort_key(f.path)))
    return SeriesInputs(tuple(frames), voxel_size)


def _is_map_file(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and name.endswith(MAP_SUFFIXES)


def _maps_in(directory: Path) -> list[str]:
    return [str(p) for p in sorted(directory.iterdir(), key=lambda p: natural_sort_key(p.name))
            if _is_map_file(p)]


def _expand(item: str, allow_list: bool, base: Path | None = None) -> list[tuple[str, str]]:
    """(path, component from a sub-directory) of the maps ``item`` stands for."""
    path = Path(item)
    if base is not None and not path.is_absolute():
        path = base / path
    if not path.exists() and _GLOB.search(item):
        matches = sorted(glob.glob(str(path)), key=natural_sort_key)
        if not matches:
            raise InputError(item, "no file matches this pattern")
        return [entry for match in matches for entry in _expand(match, allow_list=False)]
    if not path.exists():
        raise InputError(path, "no such file or directory")
    if path.is_dir():
        if (path / "zarr.json").exists() or (path / ".zgroup").exists() or path.suffix == ".zarr":
            raise InputError(path, "is a zarr store; give a map-series store alone, not with "
                             "other maps")
        entries = [(p, "") for p in _maps_in(path)]
        for sub in sorted((p for p in path.iterdir() if p.is_dir()),
                          key=lambda p: natural_sort_key(p.name)):
            entries.extend((p, sub.name) for p in _maps_in(sub))
        if not entries:
            raise InputError(path, f"directory holds no map files ({', '.join(MAP_SUFFIXES)}) "
                             "in it or in its sub-directories")
        return entries
    if path.name.lower().endswith(LIST_SUFFIXES):
        if not allow_list:
            raise InputError(path, "a list of maps cannot list another list")
        return _read_list(path)
    return [(str(path), "")]


def _read_list(path: Path) -> list[tuple[str, str]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read list of maps: {exc}") from None
    entries: list[tuple[str, str]] = []
    for line in lines:
        text = line.split("#", 1)[0].strip()
        if text:
            entries.extend(_expand(text, allow_list=False, base=path.parent))
    if not entries:
        raise InputError(path, "list of maps is empty")
    return entries


def _classify(path: str, directory_component: str) -> SeriesFrame:
    name = Path(path).name
    match = _3DVA.search(name)
    if match:
        number, frame = int(match.group(1)), int(match.group(2))
        return SeriesFrame(path, f"component_{match.group(1)}", "3dva", (number, frame))
    match = _RELION.search(name)
    if match:
        iteration, klass = int(match.group(1)), int(match.group(2))
        return SeriesFrame(path, directory_component, "relion", (klass, iteration))
    match = _CRYODRGN.search(name)
    if match:
        component = directory_component or Path(path).resolve().parent.name
        return SeriesFrame(path, component, "cryodrgn", (int(match.group(1)),))
    return SeriesFrame(path, directory_component, "plain", natural_sort_key(name))


# --------------------------------------------------------------------------- chained walks


def frame_in_component(components: Sequence[str] | None, n_frames: int) -> np.ndarray:
    """Index of each frame within its component (0..), or the frame index without components.

    Examples
    --------
    >>> frame_in_component(["a", "a", "b", "b", "b"], 5).tolist()
    [0, 1, 0, 1, 2]
    """
    if components is None:
        return np.arange(n_frames)
    counts: dict[str, int] = {}
    index = []
    for component in components:
        index.append(counts.get(component, 0))
        counts[component] = index[-1] + 1
    return np.asarray(index, dtype=np.int64)


def chained_walk(components: Sequence[str] | None, n_frames: int, reference: int
                 ) -> list[tuple[int, int | None]]:
    """(frame, previous frame) pairs of a chained series refinement, one chain per component.

    Without components this is one walk outward from ``reference`` in both directions. With
    components, each component is a chain of its own frames (in frame order): it starts from
    the input model at its middle frame (at ``reference`` for the component holding it) and
    walks outward; no frame starts from another component's model.

    Examples
    --------
    >>> chained_walk(None, 5, 2)
    [(2, None), (3, 2), (1, 2), (4, 3), (0, 1)]
    >>> chained_walk(["a", "a", "a", "b", "b"], 5, 1)
    [(1, None), (2, 1), (0, 1), (4, None), (3, 4)]
    """
    if components is None:
        groups = [list(range(n_frames))]
    else:
        if len(components) != n_frames:
            raise ValueError(f"{len(components)} components for {n_frames} frames")
        order: dict[str, list[int]] = {}
        for frame, component in enumerate(components):
            order.setdefault(component, []).append(frame)
        groups = list(order.values())
    walk: list[tuple[int, int | None]] = []
    for frames in groups:
        start = frames.index(reference) if reference in frames else len(frames) // 2
        walk.append((frames[start], None))
        for step in range(1, len(frames)):
            if start + step < len(frames):
                walk.append((frames[start + step], frames[start + step - 1]))
            if start - step >= 0:
                walk.append((frames[start - step], frames[start - step + 1]))
    return walk


# --------------------------------------------------------------------------- voxel size


#: Scales of the voxel size :func:`check_voxel_size` tries.
VOXEL_SCALES = (0.95, 0.97, 1.0, 1.03, 1.05)


def check_voxel_size(model_xyz: np.ndarray, density, source: str,
                     tolerance: float = 0.03) -> float | None:
    """Warn (logging) when a map's voxel size looks wrong for the model; return the best scale.

    The model's atom-centred map value, averaged over atoms, is compared with the map's
    voxel size scaled by 0.95, 0.97, 1.00, 1.03 and 1.05 about the box centre (as
    ``varref pixel-scan`` scales it; no refinement, a fraction of a second). The warning is
    given when a scale other than 1 fits clearly better, or when the model does not fit in
    the box at all (cryoDRGN writes 1 Å voxels when it had no CTF file).

    Parameters
    ----------
    model_xyz
        (N, 3) model coordinates, Å.
    density
        The map (:class:`varref.maps.Map`).
    source
        File named in the warning.
    tolerance
        Scales within this fraction of 1 are not reported.

    Returns
    -------
    float or None
        The best trial scale when a warning was given, else None.
    """
    return _check_voxel_size(model_xyz, density.origin, density.voxel_size,
                             density.data.shape[::-1], density.box_around, source, tolerance)


def check_series_voxel_size(model_xyz: np.ndarray, series, frame: int = 0,
                            tolerance: float = 0.03) -> float | None:
    """:func:`check_voxel_size` on frame ``frame`` of a series, reading only the region the
    trial scales sample (a map-series store reads those chunks, not the whole frame).

    The same test as :func:`check_voxel_size` on ``series.frame(frame)`` (trilinear values
    are read from a box that holds every voxel they use, so they are the same up to
    rounding); ``series.sources[frame]`` is named in the warning.
    """
    _, nz, ny, nx = series.shape
    return _check_voxel_size(model_xyz, series.origin, series.voxel_size, (nx, ny, nz),
                             lambda xyz, margin: series.frame_box(frame, xyz, margin),
                             series.sources[frame], tolerance)


def _check_voxel_size(model_xyz, origin, voxel_size, shape_xyz, read_box, source: str,
                      tolerance: float) -> float | None:
    """The test of :func:`check_voxel_size` on a grid given by its geometry; ``read_box(xyz,
    margin)`` returns the map's box around Cartesian points (:meth:`Map.box_around`).

    The scores are mean map values at the atoms; they are compared only with each other, so
    the map's overall scale (its sigma) does not enter, and only the voxels the trilinear
    interpolation at the scaled atom positions uses are read.
    """
    from varref.engine.interpolation import interpolate

    xyz = np.asarray(model_xyz, dtype=np.float64)
    voxel = np.asarray(voxel_size, dtype=np.float64)
    origin = np.asarray(origin, dtype=np.float64)
    shape_xyz = np.asarray(shape_xyz, dtype=np.float64)
    extent = voxel * shape_xyz
    span = xyz.max(axis=0) - xyz.min(axis=0)
    hint = ("check the voxel size (--voxel-size A overrides the headers; `varref pixel-scan` "
            "calibrates it against the model)")
    if np.any(span > extent):
        log.warning("%s: the model (%s Å across) is larger than the map box (%s Å at voxel "
                    "size %s Å); %s", source, _triple(span), _triple(extent), _triple(voxel), hint)
        return float(np.min(extent / span))
    centre = origin + 0.5 * (shape_xyz - 1.0) * voxel
    # the map scaled by s about its centre puts voxel g at centre + (g - (n-1)/2) v s: the
    # atoms sit at grid coordinates g_s, i.e. at origin + g_s v on the map as it is
    scaled_origin = {s: centre - 0.5 * (shape_xyz - 1.0) * voxel * s for s in VOXEL_SCALES}
    grid = np.concatenate([(xyz - scaled_origin[s]) / (voxel * s) for s in VOXEL_SCALES])
    inside = np.all((grid >= 0.0) & (grid <= shape_xyz - 1.0), axis=1)
    if not inside.any():  # no atom on the map at any scale: every score 0, nothing to say
        return None
    # the box around every atom position on the map, with room for each trilinear neighbour
    box = read_box(origin + grid[inside] * voxel, 2.0 * float(voxel.max()))
    lower = np.rint((box.origin - origin) / voxel)
    data = np.asarray(box.data, dtype=np.float32)
    scores = {}
    for scale in VOXEL_SCALES:
        values = interpolate(data, scaled_origin[scale] + lower * voxel * scale, voxel * scale,
                             xyz, "trilinear")  # 0 outside
        scores[scale] = float(values.mean())
    best = max(scores, key=scores.get)
    if abs(best - 1.0) > tolerance * 0.999 and scores[best] > scores[1.0] + 0.1 * abs(scores[1.0]):
        log.warning("%s: the model fits the map better with the voxel size scaled by %.2f "
                    "(header %s Å); %s", source, best, _triple(voxel), hint)
        return float(best)
    return None


def _triple(values) -> str:
    values = np.asarray(values, dtype=float)
    if np.allclose(values, values[0]):
        return f"{values[0]:.4g}"
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def open_series(inputs: Sequence[str | PathLike], resolution: float | None = None, *,
                voxel_size: float | None = None, keep_order: bool = False,
                progress: bool = False):
    """What ``varref series`` takes as MAPS: one map-series store, or maps as users have them.

    Parameters
    ----------
    inputs
        One ``MAPS.zarr`` store (``varref maps-to-zarr``; a directory or a URL such as
        ``s3://bucket/maps.zarr``), or anything :func:`collect_series_inputs` takes.
    resolution
        Nominal resolution (Å) reported for map files.
    voxel_size, keep_order
        As for :func:`collect_series_inputs` (a store keeps the voxel size it was written
        with; ``voxel_size`` with a store is an error).

    Returns
    -------
    varref.ensemble.mapseries.MapSeriesBase
        With ``components`` when the inputs have them.

    Raises
    ------
    InputError
        Bad inputs, maps on different grids (the first that differs is named).
    """
    from varref.ensemble.mapseries import is_map_series, open_map_series
    from varref.ensemble.urls import is_url

    items = [str(p) for p in inputs]
    if any(is_url(p) for p in items) and len(items) > 1:
        raise InputError(next(p for p in items if is_url(p)), "a map-series URL must be given "
                         "alone (map files are read from local paths)")
    if len(items) == 1 and (is_url(items[0]) or items[0].rstrip("/").endswith(".zarr")
                            or is_map_series(items[0])):
        if voxel_size is not None:
            raise InputError("--voxel-size", "applies to map files; a map-series store keeps "
                             "the voxel size it was written with (`varref maps-to-zarr "
                             "--voxel-size`)")
        return open_map_series(items[0])
    collected = collect_series_inputs(items, keep_order=keep_order, voxel_size=voxel_size)
    return collected.open(resolution=resolution, progress=progress)
