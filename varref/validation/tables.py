"""MolProbity Top8000 percentile grids: find them, read them, interpolate them.

File format (``*.data`` in ``Top8000_ramachandran_pct_contour_grids`` and
``Top8000_rotamer_pct_contour_grids`` of github.com/rlabduke/reference_data)::

    # Table name/description: "General (no G/P/I/V/preP), 70%, B<30"
    # Number of dimensions: 2
    # For each dimension, 1 to 2: lower_bound  upper_bound  number_of_bins  wrapping
    #   x1: -180.0 180.0 180 true
    #   x2: -180.0 180.0 180 true
    # List of table coordinates and values. (Value is last number on each line.)
    -179.0 -179.0 0.005560270487425575
    ...

Each data line gives the *centre* of one bin and its value, a fraction 0..1 (the
"percentile" reported in % by MolProbity is 100 x this value). Bins that are not listed
are 0 (the rotamer files list only non-zero bins).

Interpolation follows MolProbity's ``NDimTable.valueAt`` (cctbx
``mmtbx/rotamer/n_dim_table.py``): multilinear interpolation between the 2^n bin centres
that surround the point, with wrapping on periodic axes and clamping to the edge bin on
non-periodic ones. On a wrapped axis we first reduce the coordinate into
``[lower, upper)``; for coordinates MolProbity feeds it (dihedrals in (-180, 180]) this
gives the same numbers as its own index arithmetic, and it also folds the last chi of
Asp/Glu/Phe/Tyr (axis 0..180) into the half-turn the table covers.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from os import PathLike
from pathlib import Path

import numpy as np

from varref.atomic import atomic_path
from varref.errors import InputError

log = logging.getLogger(__name__)

#: Environment variable naming the reference-data directory.
REFERENCE_DATA_ENV = "VARREF_REFERENCE_DATA"
#: Environment variable naming where parsed grids are kept (default
#: ``$XDG_CACHE_HOME/varref/tables`` or ``~/.cache/varref/tables``; ``none`` turns it off).
CACHE_ENV = "VARREF_CACHE_DIR"
#: Bumped when the cached arrays change meaning (old entries are then ignored).
_CACHE_FORMAT = 1

RAMACHANDRAN_SUBDIR = "Top8000_ramachandran_pct_contour_grids"
ROTAMER_SUBDIR = "Top8000_rotamer_pct_contour_grids"


@dataclass(frozen=True)
class PercentileTable:
    """One n-dimensional percentile grid.

    Attributes
    ----------
    name : str
        The table's description line.
    lower, upper : (n,) float64
        Axis bounds (degrees).
    n_bins : (n,) int64
    wrap : (n,) bool
        Periodic axes.
    values : ndarray of shape ``tuple(n_bins)``
        Fraction (0..1) per bin.
    source : str
        File it was read from.
    """

    name: str
    lower: np.ndarray
    upper: np.ndarray
    n_bins: np.ndarray
    wrap: np.ndarray
    values: np.ndarray
    source: str

    @property
    def n_dim(self) -> int:
        return len(self.n_bins)

    @property
    def bin_width(self) -> np.ndarray:
        return (self.upper - self.lower) / self.n_bins

    def value_at(self, points: np.ndarray) -> np.ndarray:
        """Interpolated fraction (0..1) at points of shape (m, n_dim) or (n_dim,).

        NaN coordinates give NaN.
        """
        points = np.asarray(points, dtype=np.float64)
        single = points.ndim == 1
        points = np.atleast_2d(points)
        if points.shape[1] != self.n_dim:
            raise ValueError(f"table {self.name!r} has {self.n_dim} dimensions, "
                             f"points have {points.shape[1]}")
        finite = np.all(np.isfinite(points), axis=1)
        coords = np.where(finite[:, None], points, self.lower) - self.lower
        coords = np.where(self.wrap, np.mod(coords, self.upper - self.lower), coords)
        # position in units of bins, relative to the centre of bin 0
        u = coords / self.bin_width - 0.5
        base = np.floor(u)
        frac = u - base
        base = base.astype(np.int64)
        result = np.zeros(len(points))
        for corner in range(1 << self.n_dim):
            weight = np.ones(len(points))
            index = []
            for dim in range(self.n_dim):
                upper_neighbour = (corner >> dim) & 1
                weight = weight * (frac[:, dim] if upper_neighbour else 1.0 - frac[:, dim])
                i = base[:, dim] + upper_neighbour
                if self.wrap[dim]:
                    i = np.mod(i, self.n_bins[dim])
                else:
                    i = np.clip(i, 0, self.n_bins[dim] - 1)
                index.append(i)
            result += weight * self.values[tuple(index)]
        result[~finite] = np.nan
        return result[0] if single else result


def read_table(path: str | PathLike) -> PercentileTable:
    """Read one ``*.data`` percentile grid (format in the module docstring)."""
    return _read_table_cached(str(Path(path).resolve()))


@lru_cache(maxsize=64)
def _read_table_cached(path: str) -> PercentileTable:
    # Parsing the 27 text grids (11 MB) takes ~0.3 s per process; their arrays are kept on
    # disk, keyed by the file's path, size and modification time, and read back in ~10 ms.
    cached = _cache_file(path)
    if cached is not None and cached.exists():
        try:
            with np.load(cached, allow_pickle=False) as arrays:
                return PercentileTable(str(arrays["name"]), arrays["lower"], arrays["upper"],
                                       arrays["n_bins"], arrays["wrap"], arrays["values"], path)
        except (OSError, ValueError, KeyError) as exc:  # truncated or foreign: parse again
            log.debug("ignoring the cached grid %s (%s)", cached, exc)
    table = _parse_table(path)
    if cached is not None:
        _store(cached, table)
    return table


def _cache_file(path: str) -> Path | None:
    """Where the parsed arrays of grid ``path`` are kept, or None when caching is off."""
    root = os.environ.get(CACHE_ENV)
    if root is not None and root.strip().lower() in ("", "none", "off"):
        return None
    if root is None:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = str(Path(base) / "varref" / "tables")
    stat = os.stat(path)
    key = hashlib.sha256(f"{_CACHE_FORMAT}|{path}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return Path(root) / f"{Path(path).stem}-{key.hexdigest()[:20]}.npz"


def _store(cached: Path, table: PercentileTable) -> None:
    """Write the arrays atomically (a concurrent reader sees the old file or the new one);
    a cache that cannot be written only costs the parse next time."""
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cached) as temporary, open(temporary, "wb") as out:
            np.savez(out, name=np.array(table.name), lower=table.lower, upper=table.upper,
                     n_bins=table.n_bins, wrap=table.wrap, values=table.values)
    except OSError as exc:
        log.debug("could not keep the parsed grid in %s (%s)", cached.parent, exc)


def _parse_table(path: str) -> PercentileTable:
    header: list[str] = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.startswith("#"):
                break
            header.append(line.rstrip("\n"))
    name = ""
    n_dim = None
    axes: list[tuple[float, float, int, bool]] = []
    for line in header:
        text = line.lstrip("#").strip()
        if text.lower().startswith("table name"):
            name = text.split(":", 1)[1].strip().strip('"')
        elif text.lower().startswith("number of dimensions"):
            n_dim = int(text.split(":", 1)[1])
        elif len(text) > 1 and text[0] == "x" and ":" in text and text[1].isdigit():
            fields = text.split(":", 1)[1].split()
            axes.append((float(fields[0]), float(fields[1]), int(fields[2]),
                         fields[3].lower() in ("true", "yes", "on", "1")))
    if n_dim is None or len(axes) != n_dim:
        raise InputError(path, "not a MolProbity percentile grid (header lacks the "
                         "'Number of dimensions' and per-axis bound lines)")
    data = np.loadtxt(path, comments="#", ndmin=2)
    if data.shape[1] < n_dim + 1:
        raise InputError(path, f"expected {n_dim} coordinates and a value per line")
    lower = np.array([a[0] for a in axes])
    upper = np.array([a[1] for a in axes])
    n_bins = np.array([a[2] for a in axes], dtype=np.int64)
    wrap = np.array([a[3] for a in axes], dtype=bool)
    width = (upper - lower) / n_bins
    # MolProbity's whereIs: floor((x - lower) / width), capped at the last bin
    index = np.floor((data[:, :n_dim] - lower) / width).astype(np.int64)
    index = np.minimum(index, n_bins - 1)
    index = np.where(wrap, np.mod(index, n_bins), np.maximum(index, 0))
    values = np.zeros(tuple(n_bins), dtype=np.float64)
    values[tuple(index.T)] = data[:, n_dim]
    return PercentileTable(name, lower, upper, n_bins, wrap, values, path)


def resolve_reference_data(directory: str | PathLike | None) -> Path | None:
    """The reference-data directory: ``directory``, else ``$VARREF_REFERENCE_DATA``, else None.

    Raises
    ------
    InputError
        The directory (or the environment variable's) does not exist.
    """
    if directory is None:
        from_env = os.environ.get(REFERENCE_DATA_ENV)
        if not from_env:
            return None
        path = Path(from_env)
        if not path.is_dir():
            raise InputError(f"${REFERENCE_DATA_ENV}={from_env}", "not a directory")
        return path
    path = Path(directory)
    if not path.is_dir():
        raise InputError(path, "reference-data directory not found")
    return path


def find_grid(reference_data: str | PathLike, subdir: str, file_name: str) -> Path | None:
    """Locate ``file_name`` in a reference-data tree; None if absent.

    Accepted layouts: ``DIR/<subdir>/<file>`` (the rlabduke ``Top8000`` folder),
    ``DIR/Top8000/<subdir>/<file>`` (the whole repository) and ``DIR/<file>`` (a flat
    folder such as cctbx's ``rotarama_data``).
    """
    root = Path(reference_data)
    for candidate in (root / subdir / file_name, root / "Top8000" / subdir / file_name,
                      root / file_name):
        if candidate.is_file():
            return candidate
    return None


#: Classification labels shared by the Ramachandran and rotamer analyses.
FAVOURED, ALLOWED, OUTLIER = "favoured", "allowed", "outlier"


def status_counts(rows: list[dict]) -> dict[str, object]:
    """Counts and percentages of favoured/allowed/outlier among rows that have one of them."""
    evaluated = [row for row in rows if row["status"] in (FAVOURED, ALLOWED, OUTLIER)]
    n = len(evaluated)
    count = {status: sum(row["status"] == status for row in evaluated)
             for status in (FAVOURED, ALLOWED, OUTLIER)}

    def percent(k: int) -> float:
        return 100.0 * k / n if n else float("nan")

    return {
        "n_evaluated": n,
        "n_favoured": count[FAVOURED],
        "n_allowed": count[ALLOWED],
        "n_outliers": count[OUTLIER],
        "percent_favoured": percent(count[FAVOURED]),
        "percent_allowed": percent(count[ALLOWED]),
        "percent_outliers": percent(count[OUTLIER]),
    }
