"""A refined series ready for ChimeraX: multi-model mmCIF, B column, maps at equal volume.

``write_chimerax`` writes into a directory

* ``series.cif`` — one model per frame (its best member), in the maps' frame (not
  superposed), with per-atom displacement from the reference frame's model (Å) — or the
  spread of the frame's members (``b_column="spread"``) — in the B-factor column;
* ``maps/frame_NNN.mrc`` — only when the series is a zarr map-series store (ChimeraX does
  not read it); map files given as files are referenced where they are;
* ``series.cxc`` — a ChimeraX command script: opens the maps as one volume series
  (``open ... vseries true``, model #1, frames #1.1..#1.F), sets every map's contour level
  so that it encloses the same volume, opens the models (#2, frames #2.1..#2.F), colours them
  by the B column (``color bfactor``) and adds sliders (``vseries slider``, ``mseries
  slider``) to play the series.

Equal-volume contour rule
-------------------------
Every map is contoured at the level above which lie exactly n = round(V / v) voxels (v: voxel
volume), i.e. the n-th largest value of the map (``numpy.partition``), so every frame shows
the same volume V however its scale or noise differ. V is the model's volume at the average
protein density 1.35 g/cm³: V = M · 1.66054 / 1.35 Å³ for a mass M in Da (gemmi element
weights; one hydrogen per heavy atom added when the model has none — close for proteins),
or given (``volume``).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
import xarray as xr

from varref.errors import InputError

#: g/cm³, average protein density (Fischer et al. 2004 give 1.35–1.41 for most proteins).
PROTEIN_DENSITY = 1.35
#: Å³ per Da at 1 g/cm³ (1 Da = 1.66054e-24 g, 1 cm³ = 1e24 Å³).
A3_PER_DALTON_AT_UNIT_DENSITY = 1.66054
B_COLUMNS = ("displacement", "spread")


@dataclass
class ChimeraXExport:
    """What :func:`write_chimerax` wrote.

    Attributes
    ----------
    models, script : Path
        The multi-model mmCIF and the ChimeraX script.
    maps : list of Path
        Map file of every exported frame, as the script opens them.
    frames : list of int
        Exported frames (those with a finished member), in order.
    levels : numpy.ndarray
        Contour level of every exported map.
    volume : float
        Å³ enclosed by every contour.
    b_max : float
        Largest value in the B column.
    """

    models: Path
    script: Path
    maps: list[Path]
    frames: list[int]
    levels: np.ndarray
    volume: float
    b_max: float


def model_volume(model) -> float:
    """Volume (Å³) of the model's mass at 1.35 g/cm³ (hydrogens estimated if absent).

    Examples
    --------
    >>> from varref.example_data import example_helix
    >>> round(model_volume(example_helix(10)))     # 10 Ala (heavy atoms) + 1 H per heavy atom
    874
    """
    import gemmi

    elements = np.char.upper(np.char.strip(np.asarray(model.element).astype(str)))
    hydrogen = np.isin(elements, ["H", "D"])
    mass = float(sum(gemmi.Element(str(e)).weight for e in elements))
    if not hydrogen.any():
        mass += 1.008 * len(elements)
    return mass * A3_PER_DALTON_AT_UNIT_DENSITY / PROTEIN_DENSITY


def equal_volume_level(data: np.ndarray, voxel_volume: float, volume: float) -> float:
    """The level above which the map encloses ``volume`` Å³ (its n-th largest value).

    Examples
    --------
    >>> equal_volume_level(np.arange(10.0), 1.0, 3.0)   # 3 voxels above: 7, 8, 9
    7.0
    """
    values = np.asarray(data, dtype=np.float64).ravel()
    n = int(round(volume / voxel_volume))
    n = min(max(n, 1), values.size)
    return float(np.partition(values, values.size - n)[values.size - n])


def b_values(dataset: xr.Dataset, frames: list[int], best: np.ndarray, reference_frame: int,
             b_column: str) -> np.ndarray:
    """(F, N) per-atom values for the B column: displacement from the reference frame's best
    model (Å, in the maps' frame), or the r.m.s. distance of a frame's finished members from
    their mean (``spread``, Å; 0 with one member)."""
    def xyz(frame: int, member: int) -> np.ndarray:
        return np.asarray(dataset["xyz"].isel(frame=frame, member=member).values, dtype=np.float64)

    if b_column == "displacement":
        reference = xyz(reference_frame, int(best[reference_frame]))
        return np.stack([np.linalg.norm(xyz(f, int(best[f])) - reference, axis=1) for f in frames])
    finished = np.asarray(dataset["finished"].values, dtype=bool)
    values = []
    for f in frames:
        members = np.stack([xyz(f, int(m)) for m in np.flatnonzero(finished[f])])
        values.append(np.sqrt(((members - members.mean(axis=0)) ** 2).sum(axis=2).mean(axis=0)))
    return np.stack(values)


def write_chimerax(dataset: xr.Dataset, series, directory: str | PathLike, *,
                   b_column: str = "displacement", volume: float | None = None,
                   reference_frame: int | None = None, model=None,
                   final_directory: str | PathLike | None = None) -> ChimeraXExport:
    """Write a series (results + maps) for ChimeraX; see the module docstring.

    Parameters
    ----------
    dataset
        Series results (:func:`varref.open_results`).
    series
        The maps it was refined into (a map series; same number of frames).
    directory
        Output directory (created if missing; files in it are replaced).
    b_column
        ``"displacement"`` (from the reference frame) or ``"spread"`` (of the frame's members).
    volume
        Å³ every contour encloses (default: the model's volume at 1.35 g/cm³).
    reference_frame
        Default: the run's reference frame, else the middle frame.
    model
        Identifiers for the mmCIF (default: the model embedded in the store).
    final_directory
        Where ``directory`` will be moved after writing (the script's paths name it);
        default ``directory``.

    Raises
    ------
    InputError
        Series and results of different lengths, no finished frame, bad options.
    """
    from varref.atomic import atomic_path
    from varref.ensemble.mapseries import FileMapSeries
    from varref.ensemble.results import model_from_results
    from varref.maps import write_map
    from varref.model import _iter_atoms, _write_structure

    if b_column not in B_COLUMNS:
        raise InputError("--b-column", f"must be one of {', '.join(B_COLUMNS)}, not {b_column!r}")
    n_frames = dataset.sizes["frame"]
    if len(series) != n_frames:
        raise InputError("maps", f"{len(series)} maps given for a store of {n_frames} frames")
    if volume is not None and not (np.isfinite(volume) and volume > 0):
        raise InputError("--volume", f"must be a positive number of Å³, not {volume}")
    finished = np.asarray(dataset["finished"].values, dtype=bool)
    cc = np.where(finished, np.asarray(dataset["cc_mask"].values, dtype=float), np.nan)
    best = np.where(finished.any(axis=1), np.argmax(np.where(np.isnan(cc), -np.inf, cc), axis=1), -1)
    frames = [int(f) for f in np.flatnonzero(best >= 0)]
    if not frames:
        raise InputError("store", "no finished member to export")
    if reference_frame is None:
        recorded = dataset.attrs.get("reference_frame")
        reference_frame = int(recorded) if recorded is not None else n_frames // 2
    if not 0 <= reference_frame < n_frames or best[reference_frame] < 0:
        raise InputError("--reference-frame", f"frame {reference_frame} is not a finished frame "
                         f"of the store (0..{n_frames - 1})")
    model = model_from_results(dataset) if model is None else model
    volume = model_volume(model) if volume is None else float(volume)

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = Path(final_directory if final_directory is not None else directory).resolve()
    values = b_values(dataset, frames, best, reference_frame, b_column)
    st = None
    for index, frame in enumerate(frames):
        xyz = np.asarray(dataset["xyz"].isel(frame=frame, member=int(best[frame])).values, dtype=np.float64)
        frame_st = model.to_structure(xyz)
        for atom, b in zip(_iter_atoms(frame_st[0]), values[index]):
            atom.b_iso = float(b)
        frame_st[0].num = index + 1
        if st is None:
            st = frame_st
        else:
            st.add_model(frame_st[0].clone())
    models_path = directory / "series.cif"
    _write_structure(st, models_path)

    map_paths, levels = [], []
    for frame in frames:
        density = series.frame(frame)
        if isinstance(series, FileMapSeries) and np.allclose(
                density.voxel_size, series._header_geometry.voxel_size):
            path = Path(series.paths[frame]).resolve()
        else:  # a zarr store, maps in memory, or a voxel size overriding the headers
            name = Path("maps") / f"frame_{frame:03d}.mrc"
            (directory / "maps").mkdir(exist_ok=True)
            write_map(density, directory / name)
            path = final / name
        map_paths.append(path)
        levels.append(equal_volume_level(density.data, float(np.prod(density.voxel_size)), volume))

    b_max = float(values.max())
    what = ("displacement from frame %d (Å)" % reference_frame if b_column == "displacement"
            else "spread of the frame's members (Å)")
    lines = [f"# varref: {len(frames)} frames; B column = {what}",
             f"# every map contoured to enclose {volume:.0f} Å³ (equal-volume rule)",
             "open " + " ".join(shlex.quote(str(p)) for p in map_paths) + " vseries true"]
    lines += [f"volume #1.{k + 1} level {level:.6g} style surface"
              for k, level in enumerate(levels)]
    lines += ["volume #1 transparency 0.5",
              f"open {shlex.quote(str(final / models_path.name))}",
              f"color bfactor #2 palette blue:white:red range 0,{max(b_max, 1e-3):.3g}",
              "vseries slider #1",
              "mseries slider #2",
              "view"]
    script = directory / "series.cxc"
    with atomic_path(script) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return ChimeraXExport(final / models_path.name, final / script.name, map_paths, frames,
                          np.array(levels), volume, b_max)
