"""Results of many refinements of one model: an xarray Dataset, in memory or streamed to zarr.

One schema serves perturbed-start ensembles (one frame) and map series (F frames). A run of
F frames × M members of a model of N atoms is held by a :class:`ResultStore`, either in memory
(``path=None``: an xarray Dataset, no files) or as a zarr store on disk, written member by
member as refinements finish.

Schema (results format 2; ``units`` and ``description`` attributes on every variable and
coordinate; ``units`` is ``"1"`` for dimensionless numbers and ``"n/a"`` for labels and flags)::

    dims         frame (F; 1 for an ensemble), member (M), atom (N), axis (3), cif_byte (bytes)
    xyz          (frame, member, atom, axis) float32  refined coordinates, Å (NaN until finished)
    start_xyz    (frame, member, atom, axis) float32  starting coordinates, Å
    b_iso        (frame, member, atom) float32        B-factors after refinement, Å²
    cc_mask, cc_box, cc_volume, cc_peaks              (frame, member) float64, map–model CCs
    bond_rmsd, angle_rmsd                             (frame, member) float64, Å and degree
    cc_mask_start, bond_rmsd_start, angle_rmsd_start  the same before refinement
    weight, runtime_s                                 (frame, member) float64, data weight and s
    finished     (frame, member) bool                 True once the member's data are written
    input_model_cif (cif_byte) uint8                  the input model as mmCIF text (UTF-8)
    coordinates  frame, member (indices); axis ("x", "y", "z"); source (frame): map file or
                 frame label; per atom: chain_id, residue_number, insertion_code ("" if none),
                 residue_name, atom_name, element, residue_index (0.. in file order: the one
                 residue identity; chain "A1" residue 1 ≠ chain "A" residue 11, 52 ≠ 52A)
    attrs        one attribute per run parameter (``attrs["resolution"] == 3.0``); a parameter
                 that is neither a scalar nor a list of scalars is stored as JSON text and its
                 name listed in ``varref_json_parameters``. ``varref_results_format`` (2) marks a
                 store, ``varref_version`` names the writer. Attribute names starting with
                 ``varref_`` are reserved.

Every (frame, member) cell is its own zarr chunk of every (frame, member) variable, so a
member is written as soon as its task finishes and a killed run keeps every finished member.
The ``finished`` flag is written after the member's data: a member whose flag is set is
complete, and ``--resume`` skips exactly those. Reads touch only the chunks they need
(:meth:`ResultStore.member_xyz` reads one member). Stores use zarr format 2 (stable string
coordinates) with consolidated metadata; the input model is embedded, so a store is
self-contained (``varref export`` and :func:`model_from_results` work from any directory).
Hydrogen and deuterium are both "hydrogen" in this layer (:data:`HYDROGEN_ELEMENTS`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from varref import __version__
from varref.ensemble.urls import require_local
from varref.errors import InputError
from varref.model import Model

if TYPE_CHECKING:
    from varref.ensemble.store_lock import StoreLock

#: Version of the store layout described in the module docstring.
RESULTS_FORMAT = 2

#: Metrics stored per member (NaN until the member finishes, or if a run did not compute one).
METRICS = ("cc_mask", "cc_box", "cc_volume", "cc_peaks", "bond_rmsd", "angle_rmsd",
           "cc_mask_start", "bond_rmsd_start", "angle_rmsd_start", "weight", "runtime_s")

#: Element symbols counted as hydrogen (deuterium included) everywhere in this layer.
HYDROGEN_ELEMENTS = frozenset({"H", "D"})

#: Per-atom identity coordinates, in the order they are stored.
ATOM_COORDS = ("chain_id", "residue_number", "insertion_code", "residue_name", "atom_name",
               "element", "residue_index")

_RESERVED_PREFIX = "varref_"
_JSON_LIST_ATTR = "varref_json_parameters"
_ZARR = {"zarr_format": 2, "consolidated": True}

_ATTRS: dict[str, tuple[str, str]] = {  # name → (units, description)
    "xyz": ("Å", "refined Cartesian coordinates of each member (NaN until finished)"),
    "start_xyz": ("Å", "starting Cartesian coordinates of each member (NaN until finished)"),
    "finished": ("n/a", "True once the member's coordinates and metrics are written"),
    "b_iso": ("Å²", "isotropic B-factors of each member after refinement (the input model's "
                    "unless B was refined, option adp; NaN until finished)"),
    "cc_mask": ("1", "map-model correlation inside the molecular mask, after refinement"),
    "cc_box": ("1", "map-model correlation over the whole box, after refinement"),
    "cc_volume": ("1", "map-model correlation over the N highest model-map points "
                       "(N = mask size), after refinement"),
    "cc_peaks": ("1", "map-model correlation over the union of the N highest points of "
                      "model and experimental map, after refinement"),
    "bond_rmsd": ("Å", "r.m.s. deviation of bond lengths from ideal, after refinement"),
    "angle_rmsd": ("degree", "r.m.s. deviation of bond angles from ideal, after refinement"),
    "cc_mask_start": ("1", "CC_mask of the starting coordinates"),
    "bond_rmsd_start": ("Å", "bond-length r.m.s. deviation of the starting coordinates"),
    "angle_rmsd_start": ("degree", "bond-angle r.m.s. deviation of the starting coordinates"),
    "weight": ("1", "data weight w in T = w * T_map + T_restraints"),
    "runtime_s": ("s", "wall time of the member's refinement (its task's time / members)"),
    "input_model_cif": ("n/a", "the input model as mmCIF text, UTF-8 bytes; "
                               "varref.ensemble.results.model_from_results rebuilds it"),
    "frame": ("1", "frame index (map of a series; 0 for an ensemble)"),
    "member": ("1", "member index within a frame"),
    "axis": ("n/a", "Cartesian axis"),
    "source": ("n/a", "map file or label of the frame"),
    "component": ("n/a", "component of the frame (3DVA component, cryoDRGN directory)"),
    "frame_in_component": ("1", "index of the frame within its component, 0.."),
    "chain_id": ("n/a", "chain name (author)"),
    "residue_number": ("1", "author residue sequence number"),
    "insertion_code": ("n/a", "residue insertion code ('' if none)"),
    "residue_name": ("n/a", "residue name"),
    "atom_name": ("n/a", "atom name"),
    "element": ("n/a", "element symbol (D for deuterium)"),
    "residue_index": ("1", "residue index, 0.. in file order; identifies a residue "
                           "(chain, number, insertion code)"),
}


# ----------------------------------------------------------------------------- parameters

def _plain_scalar(value) -> tuple[bool, object]:
    """(True, Python scalar) for a scalar attribute value (numpy scalars converted), else
    (False, value)."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return True, value
    return False, value


def encode_parameters(parameters: Mapping) -> dict:
    """Run parameters as Dataset attributes: one attribute per parameter.

    Scalars (str, int, float, bool, None; numpy scalars become Python ones) and lists or
    tuples of scalars (stored as lists) are kept as they are; anything else (dicts, nested
    lists) is stored as JSON text and its name listed in ``attrs["varref_json_parameters"]``.

    Examples
    --------
    >>> attrs = encode_parameters({"resolution": 3.0, "kind": "ensemble", "box": {"a": 1}})
    >>> attrs["resolution"], attrs["box"], attrs["varref_json_parameters"]
    (3.0, '{"a": 1}', ['box'])
    """
    attrs: dict = {}
    encoded_as_json = []
    for name, value in parameters.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"run parameter names must be non-empty strings, not {name!r}")
        if name.startswith(_RESERVED_PREFIX):
            raise ValueError(f"run parameter {name!r}: names starting with "
                             f"{_RESERVED_PREFIX!r} are reserved")
        scalar, plain = _plain_scalar(value)
        if scalar:
            attrs[name] = plain
            continue
        if isinstance(value, (list, tuple, np.ndarray)):
            items = [_plain_scalar(v) for v in (value.tolist() if isinstance(value, np.ndarray)
                                                else value)]
            if all(ok for ok, _ in items):
                attrs[name] = [v for _, v in items]
                continue
        try:
            attrs[name] = json.dumps(value)
        except TypeError as exc:
            raise ValueError(f"run parameter {name!r} is not JSON-serialisable: {exc}") from None
        encoded_as_json.append(name)
    attrs[_JSON_LIST_ATTR] = encoded_as_json
    return attrs


def decode_parameters(attrs: Mapping) -> dict:
    """The run parameters from Dataset attributes (the inverse of :func:`encode_parameters`).

    Examples
    --------
    >>> decode_parameters(encode_parameters({"seed": 1, "box": {"a": [1, 2]}}))
    {'seed': 1, 'box': {'a': [1, 2]}}
    """
    encoded_as_json = set(attrs.get(_JSON_LIST_ATTR, []))
    parameters = {}
    for name, value in attrs.items():
        if name.startswith(_RESERVED_PREFIX):
            continue
        if isinstance(value, np.ndarray):  # netCDF-style readers hand lists back as arrays
            value = value.tolist()
        parameters[name] = json.loads(value) if name in encoded_as_json else value
    return parameters


# ----------------------------------------------------------------------------- the schema

def _with_attrs(name: str, dims, data) -> xr.Variable:
    units, description = _ATTRS[name]
    return xr.Variable(dims, data, attrs={"units": units, "description": description})


def model_cif_text(model: Model) -> str:
    """The model (identifiers, coordinates, B, occupancy) as mmCIF text."""
    return model.to_structure().make_mmcif_document().as_string()


def _template(model: Model, n_frames: int, n_members: int, frame_labels: Sequence[str],
              parameters: Mapping, lazy: bool) -> xr.Dataset:
    """The empty Dataset; ``lazy`` makes the coordinate arrays dask (nothing to write)."""
    n = model.n_atoms
    shape = (n_frames, n_members, n, 3)
    if lazy:
        import dask.array as da

        empty_xyz = da.full(shape, np.nan, dtype=np.float32, chunks=shape)
        empty_start = da.full(shape, np.nan, dtype=np.float32, chunks=shape)
        empty_b = da.full(shape[:3], np.nan, dtype=np.float32, chunks=shape[:3])
    else:
        empty_xyz = np.full(shape, np.nan, np.float32)
        empty_start = empty_xyz.copy()
        empty_b = np.full(shape[:3], np.nan, np.float32)
    cif = np.frombuffer(model_cif_text(model).encode("utf-8"), dtype=np.uint8).copy()
    data = {
        "xyz": _with_attrs("xyz", ("frame", "member", "atom", "axis"), empty_xyz),
        "start_xyz": _with_attrs("start_xyz", ("frame", "member", "atom", "axis"), empty_start),
        "b_iso": _with_attrs("b_iso", ("frame", "member", "atom"), empty_b),
        "finished": _with_attrs("finished", ("frame", "member"),
                                np.zeros((n_frames, n_members), bool)),
        "input_model_cif": _with_attrs("input_model_cif", ("cif_byte",), cif),
    }
    for metric in METRICS:
        data[metric] = _with_attrs(metric, ("frame", "member"),
                                   np.full((n_frames, n_members), np.nan))
    atoms = {
        "chain_id": model.chain_id.astype(str),
        "residue_number": model.residue_number.astype(np.int64),
        "insertion_code": np.char.strip(model.insertion_code.astype(str)),
        "residue_name": model.residue_name.astype(str),
        "atom_name": model.atom_name.astype(str),
        "element": model.element.astype(str),
        "residue_index": model.residue_index.astype(np.int64),
    }
    coords = {
        "frame": _with_attrs("frame", "frame", np.arange(n_frames)),
        "member": _with_attrs("member", "member", np.arange(n_members)),
        "axis": _with_attrs("axis", "axis", np.array(["x", "y", "z"])),
        "source": _with_attrs("source", "frame", np.asarray(list(frame_labels), dtype=str)),
    }
    coords.update({name: _with_attrs(name, "atom", atoms[name]) for name in ATOM_COORDS})
    components = parameters.get("components")
    if components is not None:  # series grouped into components (varref.ensemble.series_inputs)
        from varref.ensemble.series_inputs import frame_in_component

        if len(components) != n_frames:
            raise ValueError(f"{len(components)} components for {n_frames} frames")
        coords["component"] = _with_attrs("component", "frame", np.asarray(components, dtype=str))
        coords["frame_in_component"] = _with_attrs(
            "frame_in_component", "frame", frame_in_component(components, n_frames))
    attrs = encode_parameters(parameters)
    attrs.update({"varref_results_format": RESULTS_FORMAT, "varref_version": __version__})
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _is_results_store(path: Path) -> bool:
    """True if ``path`` opens as a varref results store (any format version)."""
    try:
        import zarr

        attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    except Exception:  # noqa: BLE001 - anything unreadable is simply "not a store"
        return False
    return "varref_results_format" in attrs or "varref" in attrs


def _check_overwritable(path: Path) -> None:
    if not path.exists():
        return
    if path.is_dir() and (not any(path.iterdir()) or _is_results_store(path)):
        return
    raise InputError(path, "exists and is not a varref results store; refusing to overwrite it")


def _fsync(path: Path) -> None:
    """Flush a file's or directory's content (a directory: its entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for directory, _, files in os.walk(root):
        for name in files:
            _fsync(Path(directory) / name)
        _fsync(Path(directory))


def _publish(tmp: Path, path: Path) -> None:
    """Rename the finished store ``tmp`` to ``path`` (absent or an empty directory)."""
    try:
        os.replace(tmp, path)
    except OSError as exc:  # a non-empty directory appeared there: another run's store
        if path.is_dir() and any(path.iterdir()):
            raise InputError(path, "another run created a store here meanwhile; choose another "
                                   "--output") from None
        raise InputError(path, f"cannot create the results store: {exc.strerror}") from None
    _fsync(path.parent)


# ----------------------------------------------------------------------------- the store

class ResultStore:
    """The results of F frames × M members of one model: in memory or a zarr store on disk.

    Make one with :meth:`create` (new) or :meth:`open` (existing store on disk, e.g. to
    resume); the constructor is internal.

    Examples
    --------
    >>> from varref.example_data import example_helix
    >>> model = example_helix(4)
    >>> store = ResultStore.create(None, model, 1, 2, ["map.mrc"], {"kind": "ensemble"})
    >>> store.write_member(0, 1, model.xyz, model.xyz, {"cc_mask": 0.8})
    >>> store.finished().tolist(), store.best_member(0)
    ([[False, True]], 1)
    """

    def __init__(self, path: Path | None, dataset: xr.Dataset | None = None):
        self._path = path
        self._memory = dataset  # the Dataset itself for an in-memory store
        self._reader = None     # zarr groups, opened on first use
        self._writer = None
        if path is not None:
            group = self._group()
            self._attrs = dict(group.attrs)
            self._shape = group["finished"].shape
            self._n_atoms = group["xyz"].shape[2]
        else:
            self._attrs = dict(dataset.attrs)
            self._shape = dataset["finished"].shape
            self._n_atoms = dataset.sizes["atom"]

    # -- construction --------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | PathLike | None, model: Model, n_frames: int, n_members: int,
               frame_labels: Sequence[str], parameters: Mapping,
               lock: "StoreLock | None" = None) -> "ResultStore":
        """A new, empty store for ``n_frames`` × ``n_members`` refinements of ``model``.

        Parameters
        ----------
        path
            Directory of the zarr store, or ``None`` for an in-memory store (no files). An
            existing results store (or empty directory) there is replaced; anything else
            there is an error. The store is built next to ``path`` and renamed into place, so
            a failure leaves no partial store.
        model
            The input model; its identifiers become the atom coordinates and its mmCIF text
            is embedded (``input_model_cif``).
        n_frames, n_members
            Frames (1 for an ensemble) and members per frame.
        frame_labels
            One label per frame (map file names), the ``source`` coordinate.
        parameters
            Run parameters, one attribute each (see :func:`encode_parameters`).
        lock
            The run's write lock (:func:`varref.ensemble.store_lock.hold`): its file is put
            into the new store before the store appears at ``path``. Replacing an existing
            store needs its lock held.

        Raises
        ------
        InputError
            ``path`` holds something other than a results store, another run created a
            store there meanwhile, or ``path`` is a URL (results stores are local
            directories: :func:`varref.ensemble.urls.require_local`).
        ValueError
            Bad sizes, labels or parameter names.

        Examples
        --------
        >>> from varref.example_data import example_helix
        >>> store = ResultStore.create(None, example_helix(3), 2, 4, ["a.mrc", "b.mrc"],
        ...                            {"kind": "series", "resolution": 3.5})
        >>> store.dataset().sizes["member"], store.parameters["resolution"]
        (4, 3.5)
        """
        if n_frames < 1 or n_members < 1:
            raise ValueError(f"need at least one frame and one member, not {n_frames} × {n_members}")
        frame_labels = list(frame_labels)
        if len(frame_labels) != n_frames:
            raise ValueError(f"{len(frame_labels)} frame labels for {n_frames} frames")
        if path is None:
            return cls(None, _template(model, n_frames, n_members, frame_labels, parameters,
                                       lazy=False))
        require_local(path, "--output")
        path = Path(path)
        _check_overwritable(path)
        dataset = _template(model, n_frames, n_members, frame_labels, parameters, lazy=True)
        encoding = {name: {"chunks": (1, 1) + dataset[name].shape[2:]}
                    for name in ("xyz", "start_xyz", "b_iso", "finished", *METRICS)}
        encoding["finished"]["dtype"] = bool
        encoding["input_model_cif"] = {"chunks": dataset["input_model_cif"].shape}
        parent = path.parent if str(path.parent) else Path(".")
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent))
        try:
            # compute=False: only metadata, coordinates and the embedded model are written;
            # the (frame, member) chunks stay absent (= fill values) until members arrive
            dataset.to_zarr(str(tmp), mode="w", compute=False, encoding=encoding, **_ZARR)
            if lock is not None:
                lock.write_into(tmp)
            _fsync_tree(tmp)
            if path.exists() and any(path.iterdir()):
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=parent))
                os.replace(path, old / "store")
                _publish(tmp, path)
                shutil.rmtree(old)
            else:
                _publish(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls(path)

    @classmethod
    def open(cls, path: str | PathLike) -> "ResultStore":
        """Open an existing results store on disk (to read it, or to resume a run).

        Raises
        ------
        InputError
            ``path`` does not exist, is not a zarr store, is a store of another kind, was
            written by an older varref (results format 1), or is a URL.

        Examples
        --------
        >>> store = ResultStore.open("ens.zarr")             # doctest: +SKIP
        >>> store.finished().sum(), store.parameters["kind"]  # doctest: +SKIP
        (100, 'ensemble')
        """
        require_local(path, "results store")
        path = Path(path)
        if not path.exists():
            raise InputError(path, "results store not found")
        if not path.is_dir():
            raise InputError(path, "not a varref results store (a file; a store is a directory)")
        import zarr

        try:
            attrs = dict(zarr.open_group(str(path), mode="r").attrs)
        except Exception as exc:  # zarr raises several types for a non-store
            raise InputError(path, f"not a varref results store (not a zarr group: "
                                   f"{type(exc).__name__})") from None
        if "varref_results_format" not in attrs:
            if "varref" in attrs:
                raise InputError(path, "results store of an older varref (format 1, parameters "
                                       "as JSON): re-run it with this version")
            if "varref_map_series" in attrs:
                raise InputError(path, "is a varref map series, not a results store")
            raise InputError(path, "not a varref results store (no varref_results_format attribute)")
        if attrs["varref_results_format"] != RESULTS_FORMAT:
            raise InputError(path, f"results format {attrs['varref_results_format']!r}; this "
                                   f"varref reads format {RESULTS_FORMAT}")
        group = zarr.open_group(str(path), mode="r")
        missing = [name for name in ("xyz", "start_xyz", "b_iso", "finished", "input_model_cif",
                                     *METRICS)
                   if name not in group]
        if missing:
            raise InputError(path, f"damaged results store: missing {', '.join(missing)}")
        return cls(path)

    # -- reading --------------------------------------------------------------------------

    def _group(self, write: bool = False):
        import zarr

        if write:
            if self._writer is None:
                self._writer = zarr.open_group(str(self._path), mode="r+")
            return self._writer
        if self._reader is None:
            self._reader = zarr.open_group(str(self._path), mode="r")
        return self._reader

    @property
    def path(self) -> Path | None:
        """Directory of the zarr store, or ``None`` in memory."""
        return self._path

    @property
    def n_frames(self) -> int:
        return int(self._shape[0])

    @property
    def n_members(self) -> int:
        return int(self._shape[1])

    @property
    def n_atoms(self) -> int:
        return int(self._n_atoms)

    @property
    def parameters(self) -> dict:
        """The run parameters, with the types they were given (tuples come back as lists).

        Examples
        --------
        >>> from varref.example_data import example_helix
        >>> store = ResultStore.create(None, example_helix(2), 1, 1, ["m"], {"seed": 7})
        >>> store.parameters
        {'seed': 7}
        """
        return decode_parameters(self._attrs)

    def finished(self) -> np.ndarray:
        """(frame, member) bool array: True where a member's results are complete."""
        if self._memory is not None:
            return self._memory["finished"].values.copy()
        return np.asarray(self._group()["finished"][...], dtype=bool)

    def _check_cell(self, frame: int, member: int) -> tuple[int, int]:
        frame, member = int(frame), int(member)
        if not (0 <= frame < self.n_frames and 0 <= member < self.n_members):
            raise IndexError(f"(frame {frame}, member {member}) outside the store's "
                             f"{self.n_frames} × {self.n_members}")
        return frame, member

    def member_xyz(self, frame: int, member: int) -> np.ndarray:
        """Refined coordinates (N, 3) float64 of one finished member, reading only its chunk.

        Raises
        ------
        IndexError
            No such (frame, member).
        ValueError
            The member has not finished.
        InputError
            The member is flagged finished but its coordinates are missing or not finite (a
            damaged store: ``--resume`` re-runs such members).

        Examples
        --------
        >>> from varref.example_data import example_helix
        >>> model = example_helix(2)
        >>> store = ResultStore.create(None, model, 1, 1, ["m"], {})
        >>> store.write_member(0, 0, model.xyz + 1.0, model.xyz, {"cc_mask": 0.5})
        >>> bool(np.allclose(store.member_xyz(0, 0), model.xyz + 1.0, atol=1e-4))
        True
        """
        frame, member = self._check_cell(frame, member)
        if self._memory is not None:
            done = bool(self._memory["finished"].values[frame, member])
            xyz = self._memory["xyz"].values[frame, member]
        else:
            group = self._group()
            done = bool(group["finished"][frame, member])
            xyz = group["xyz"][frame, member]
        if not done:
            raise ValueError(f"member {member} of frame {frame} has not finished")
        if not np.isfinite(xyz).all():
            raise InputError(self._path or "results", f"member {member} of frame {frame} is "
                             "flagged finished but its coordinates are missing or NaN (damaged "
                             "store); re-run it with --resume")
        return np.asarray(xyz, dtype=np.float64)

    def best_member(self, frame: int) -> int:
        """The finished member of ``frame`` with the highest CC_mask (ties: the lowest index).

        Raises
        ------
        ValueError
            No member of the frame has finished.

        Examples
        --------
        >>> from varref.example_data import example_helix
        >>> model = example_helix(2)
        >>> store = ResultStore.create(None, model, 1, 3, ["m"], {})
        >>> for member, cc in [(0, 0.7), (2, 0.9)]:
        ...     store.write_member(0, member, model.xyz, model.xyz, {"cc_mask": cc})
        >>> store.best_member(0)
        2
        """
        frame, _ = self._check_cell(frame, 0)
        if self._memory is not None:
            done = self._memory["finished"].values[frame]
            cc = self._memory["cc_mask"].values[frame]
        else:
            group = self._group()
            done = np.asarray(group["finished"][frame], dtype=bool)
            cc = np.asarray(group["cc_mask"][frame], dtype=np.float64)
        if not done.any():
            raise ValueError(f"frame {frame} has no finished member")
        return best_of(done, cc)

    def dataset(self) -> xr.Dataset:
        """The results as an xarray Dataset (lazy, dask-backed, for a store on disk).

        Examples
        --------
        >>> ds = ResultStore.open("ens.zarr").dataset()               # doctest: +SKIP
        >>> ds["cc_mask"].where(ds["finished"]).mean().item()          # doctest: +SKIP
        0.81
        """
        if self._memory is not None:
            return self._memory.copy(deep=False)
        return xr.open_zarr(str(self._path), consolidated=True)

    # -- writing --------------------------------------------------------------------------

    def write_member(self, frame: int, member: int, xyz: np.ndarray, start_xyz: np.ndarray,
                     metrics: Mapping[str, float], b_iso: np.ndarray | None = None) -> None:
        """Write one finished member: coordinates and metrics first, then its ``finished`` flag.

        Parameters
        ----------
        frame, member
            The cell.
        xyz, start_xyz
            (N, 3) refined and starting coordinates, Å; stored as float32.
        metrics
            Values for names in :data:`METRICS`; missing ones are stored as NaN.

        Raises
        ------
        IndexError
            No such (frame, member).
        ValueError
            Wrong coordinate shape, non-finite refined coordinates, or a metric name that is
            not in :data:`METRICS` (it would otherwise be lost).

        Examples
        --------
        >>> from varref.example_data import example_helix
        >>> model = example_helix(2)
        >>> store = ResultStore.create(None, model, 1, 1, ["m"], {})
        >>> store.write_member(0, 0, model.xyz, model.xyz, {"cc_mask": 0.8, "runtime_s": 2.0})
        >>> store.finished().tolist()
        [[True]]
        """
        self.write_members(frame, [member], np.asarray(xyz)[np.newaxis],
                           np.asarray(start_xyz)[np.newaxis], [metrics],
                           None if b_iso is None else np.asarray(b_iso)[np.newaxis])

    def write_members(self, frame: int, members: Sequence[int], xyz: np.ndarray,
                      start_xyz: np.ndarray, metrics: Sequence[Mapping[str, float]],
                      b_iso: np.ndarray | None = None) -> None:
        """Write finished members of one frame together (a task's batch): every value first,
        then their ``finished`` flags — one zarr call per variable instead of one per member
        and variable (zarr's per-call overhead, ~2 ms, dominated a member's write).

        ``xyz``, ``start_xyz`` are (M, N, 3), ``b_iso`` (M, N), ``metrics`` M mappings; the
        checks and errors are those of :meth:`write_member`, and nothing is written when any
        member fails them.
        """
        cells = [self._check_cell(frame, member) for member in members]
        frame, members = cells[0][0], np.array([member for _, member in cells], dtype=np.int64)
        if len(set(members.tolist())) != len(members):
            raise ValueError(f"members {members.tolist()} repeat a member")
        if len(metrics) != len(members):
            raise ValueError(f"{len(metrics)} metric sets for {len(members)} members")
        arrays = {}
        for name, value in (("xyz", xyz), ("start_xyz", start_xyz)):
            value = np.asarray(value, dtype=np.float64)
            if value.shape != (len(members), self.n_atoms, 3):
                raise ValueError(f"{name} has shape {value.shape[1:]} for {len(value)} member(s), "
                                 f"the store has ({self.n_atoms}, 3) for {len(members)}")
            arrays[name] = value.astype(np.float32)
        if b_iso is not None:
            b_iso = np.asarray(b_iso, dtype=np.float64)
            if b_iso.shape != (len(members), self.n_atoms):
                raise ValueError(f"b_iso has shape {b_iso.shape[1:]} for {len(b_iso)} member(s), "
                                 f"the store has ({self.n_atoms},) for {len(members)}")
            arrays["b_iso"] = b_iso.astype(np.float32)
        for member, refined in zip(members, arrays["xyz"]):
            if not np.isfinite(refined).all():
                raise ValueError(f"member {member} of frame {frame}: non-finite refined coordinates")
        unknown = sorted(set().union(*metrics) - set(METRICS))
        if unknown:
            raise ValueError(f"unknown metric(s) {', '.join(unknown)}; stored metrics are "
                             f"{', '.join(METRICS)}")
        values = {name: np.array([float(m.get(name, np.nan)) for m in metrics]) for name in METRICS}
        if self._memory is not None:
            target = self._memory
            for name, value in (*arrays.items(), *values.items()):
                target[name].values[frame, members] = value
            target["finished"].values[frame, members] = True
            return
        group = self._group(write=True)
        # runs of consecutive members as slices: zarr then sees whole chunks and writes them
        # without reading what was there (an index array makes it read-modify-write)
        runs = np.split(np.arange(len(members)), np.flatnonzero(np.diff(members) != 1) + 1)
        for name, value in (*arrays.items(), *values.items()):
            for run in runs:
                group[name][frame, members[run[0]]:members[run[-1]] + 1] = value[run]
        # zarr writes each chunk to a temporary file and renames it into place (never a torn
        # chunk); the fsync makes the data survive a crash of the machine, not only of this
        # process, before the flags claim it is there
        self._sync_cells(frame, members, [*arrays, *values])
        for run in runs:
            group["finished"][frame, members[run[0]]:members[run[-1]] + 1] = True

    def _chunk_file(self, name: str, frame: int, member: int) -> Path:
        """File of the (frame, member) chunk of variable ``name`` (zarr format 2 layout)."""
        trailing = {"xyz": 2, "start_xyz": 2, "b_iso": 1}.get(name, 0)
        return self._path / name / ".".join(map(str, (frame, member) + (0,) * trailing))

    def _sync_cells(self, frame: int, members: Sequence[int], names: Sequence[str]) -> None:
        for name in names:
            for member in members:
                chunk = self._chunk_file(name, frame, int(member))
                if chunk.exists():  # a chunk equal to the fill value (NaN) is not written
                    _fsync(chunk)
        for name in names:
            _fsync(self._path / name)  # the renames into place

    def incomplete_members(self) -> list[tuple[int, int]]:
        """(frame, member) cells flagged finished whose coordinates are missing or not finite.

        A flagged member of a store written by this version is always complete; a damaged
        copy, a lost chunk file or a store written by a faulty build is not, and ``--resume``
        must re-run such members rather than trust the flag. Reads every finished member's
        ``xyz`` and ``start_xyz`` (one chunk at a time).
        """
        finished = self.finished()
        bad = []
        for frame, member in zip(*np.nonzero(finished)):
            frame, member = int(frame), int(member)
            if self._memory is not None:
                xyz = self._memory["xyz"].values[frame, member]
                start = self._memory["start_xyz"].values[frame, member]
            else:
                group = self._group()
                xyz, start = group["xyz"][frame, member], group["start_xyz"][frame, member]
            if not (np.isfinite(xyz).all() and np.isfinite(start).all()):
                bad.append((frame, member))
        return bad

    def clear_finished(self, cells: Sequence[tuple[int, int]]) -> None:
        """Unset the ``finished`` flag of ``cells`` (members to be refined again)."""
        for frame, member in cells:
            frame, member = self._check_cell(frame, member)
            if self._memory is not None:
                self._memory["finished"].values[frame, member] = False
            else:
                self._group(write=True)["finished"][frame, member] = False
        if self._path is not None:
            self._reader = None  # re-read flags from disk next time

    def remove_partial_files(self) -> int:
        """Delete zarr's temporary chunk files (``*.partial``) left by a killed writer; the
        number removed. Only call while holding the store's lock."""
        if self._path is None:
            return 0
        leftovers = list(self._path.rglob("*.partial"))
        for leftover in leftovers:
            leftover.unlink(missing_ok=True)
        return len(leftovers)


# ----------------------------------------------------------------------------- public helpers

def best_of(done: np.ndarray, cc: np.ndarray) -> int:
    """Index of the best member: the highest CC_mask among ``done`` (ties: the lowest index;
    if no finished member has a CC, the first finished one). The one rule for a frame's best
    model, whether read from a store or from the outcomes of a running chained series.

    Examples
    --------
    >>> best_of(np.array([True, True, False]), np.array([0.5, 0.7, 0.9]))
    1
    """
    done = np.asarray(done, dtype=bool)
    cc = np.asarray(cc, dtype=np.float64)
    score = np.where(done & ~np.isnan(cc), cc, -np.inf)
    if not np.isfinite(score).any():  # finished, but no CC recorded: the first finished
        return int(np.flatnonzero(done)[0])
    return int(np.argmax(score))


def open_results(path: str | PathLike) -> xr.Dataset:
    """Open a results store on disk as a lazy xarray Dataset (what a notebook does).

    Raises
    ------
    InputError
        Not a varref results store (see :meth:`ResultStore.open`).

    Examples
    --------
    >>> ds = open_results("series.zarr")                            # doctest: +SKIP
    >>> ds.attrs["kind"], ds.sizes["frame"]                         # doctest: +SKIP
    ('series', 11)
    """
    return ResultStore.open(path).dataset()


def check_model_matches(model: Model, dataset: xr.Dataset, source: str | PathLike) -> None:
    """Raise :class:`InputError` unless ``model``'s atoms are the store's, in the same order.

    Examples
    --------
    >>> from varref.example_data import example_helix
    >>> model = example_helix(3)
    >>> ds = ResultStore.create(None, model, 1, 1, ["m"], {}).dataset()
    >>> check_model_matches(model, ds, "model.pdb")  # no error
    """
    if model.n_atoms != dataset.sizes["atom"]:
        raise InputError(source, f"has {model.n_atoms} atoms, the results store {dataset.sizes['atom']}")
    ours = {
        "chain_id": model.chain_id.astype(str), "residue_number": model.residue_number,
        "insertion_code": np.char.strip(model.insertion_code.astype(str)),
        "residue_name": model.residue_name.astype(str), "atom_name": model.atom_name.astype(str),
        "element": model.element.astype(str),
    }
    for name, values in ours.items():
        stored = np.asarray(dataset[name].values)
        differ = np.flatnonzero(stored != values)
        if len(differ):
            i = int(differ[0])
            raise InputError(source, f"atom {i} differs from the results store's in {name} "
                                     f"({values[i]!r} here, {stored[i]!r} in the store)")


def model_from_results(dataset: xr.Dataset) -> Model:
    """The input model of a run, rebuilt from the mmCIF text embedded in its results.

    Atom order, identifiers, starting coordinates, B and occupancy are those of the model the
    run started from; checked against the store's atom coordinates.

    Raises
    ------
    InputError
        The Dataset has no embedded model, or it does not match the store's atoms.

    Examples
    --------
    >>> model = model_from_results(open_results("ens.zarr"))      # doctest: +SKIP
    >>> model.with_xyz(ResultStore.open("ens.zarr").member_xyz(0, 3))  # doctest: +SKIP
    """
    import gemmi

    source = str(dataset.attrs.get("model", "results store"))
    if "input_model_cif" not in dataset:
        raise InputError(source, "the results have no embedded input model (input_model_cif)")
    text = np.asarray(dataset["input_model_cif"].values, dtype=np.uint8).tobytes().decode("utf-8")
    try:
        block = gemmi.cif.read_string(text).sole_block()
        structure = gemmi.make_structure_from_block(block)
    except (RuntimeError, ValueError) as exc:
        raise InputError(source, f"embedded input model unreadable: {str(exc).splitlines()[0]}") from None
    structure.merge_chain_parts()
    model = Model.from_structure(structure, source=source)
    check_model_matches(model, dataset, source)
    return model
