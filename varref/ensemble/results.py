"""Results of many refinements as one xarray Dataset, streamed to zarr as members finish.

Schema (one for perturbed-start ensembles and map series):

    dims     frame (F; 1 for an ensemble), member (M), atom (N), axis (3: x, y, z)
    xyz            (frame, member, atom, axis) float32  refined coordinates, Å
    start_xyz      (frame, member, atom, axis) float32  starting coordinates, Å
    <metric>       (frame, member) float64              cc_mask, cc_box, bond_rmsd, ...
    finished       (frame, member) bool                 written last for each member
    coords         atom_name, residue_name, residue_number, chain_id, element (atom);
                   source (frame): map file or frame label
    attrs          run parameters (JSON-serialisable), model file, varref version

Every (frame, member) cell is its own zarr chunk, so a member is written with one region
write as soon as its task finishes, and a killed run keeps every finished member. The
``finished`` flag is written in the same region write as the member's data; ``--resume``
skips members whose flag is set. Stores use zarr format 2 (stable string coordinates).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import numpy as np
import xarray as xr

from varref.errors import InputError
from varref.model import Model

#: Metrics stored per member (NaN until the member finishes).
METRICS = ("cc_mask", "cc_box", "cc_volume", "cc_peaks", "bond_rmsd", "angle_rmsd",
           "cc_mask_start", "bond_rmsd_start", "angle_rmsd_start", "weight", "runtime_s")

_ZARR = {"zarr_format": 2, "consolidated": True}


def _template(model: Model, n_frames: int, n_members: int, frame_labels: Sequence[str],
              attrs: dict) -> xr.Dataset:
    n = model.n_atoms
    empty_xyz = np.full((n_frames, n_members, n, 3), np.nan, np.float32)
    data = {
        "xyz": (("frame", "member", "atom", "axis"), empty_xyz),
        "start_xyz": (("frame", "member", "atom", "axis"), empty_xyz.copy()),
        "finished": (("frame", "member"), np.zeros((n_frames, n_members), bool)),
    }
    for metric in METRICS:
        data[metric] = (("frame", "member"), np.full((n_frames, n_members), np.nan))
    coords = {
        "frame": np.arange(n_frames), "member": np.arange(n_members), "axis": ["x", "y", "z"],
        "atom_name": ("atom", model.atom_name.astype(str)),
        "residue_name": ("atom", model.residue_name.astype(str)),
        "residue_number": ("atom", model.residue_number),
        "chain_id": ("atom", model.chain_id.astype(str)),
        "element": ("atom", model.element.astype(str)),
        "source": ("frame", np.asarray(list(frame_labels), dtype=str)),
    }
    return xr.Dataset(data, coords=coords, attrs={"varref": json.dumps(attrs)})


def create_store(path: str | PathLike, model: Model, n_frames: int, n_members: int,
                 frame_labels: Sequence[str], attrs: dict) -> None:
    """Create an empty results store (metadata and fill values only)."""
    dataset = _template(model, n_frames, n_members, frame_labels, attrs)
    encoding = {name: {"chunks": (1, 1) + dataset[name].shape[2:]}
                for name in dataset.data_vars}
    dataset.to_zarr(str(path), mode="w", compute=False, encoding=encoding, **_ZARR)


def open_store(path: str | PathLike) -> xr.Dataset:
    """Open a results store lazily (what notebook users do: ``xarray.open_zarr``)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "results store not found")
    try:
        dataset = xr.open_zarr(str(path), consolidated=True)
    except Exception as exc:  # zarr/xarray raise several types for a non-store
        raise InputError(path, f"not a varref results store ({type(exc).__name__})") from None
    if "finished" not in dataset or "varref" not in dataset.attrs:
        raise InputError(path, "not a varref results store (no 'finished' flag)")
    return dataset


def run_parameters(dataset: xr.Dataset) -> dict:
    """The run parameters recorded in a store's attributes."""
    return json.loads(dataset.attrs["varref"])


def finished_cells(path: str | PathLike) -> np.ndarray:
    """(frame, member) bool array of members already written."""
    return open_store(path)["finished"].values


def write_member(path: str | PathLike, frame: int, member: int, xyz: np.ndarray,
                 start_xyz: np.ndarray, metrics: dict[str, float]) -> None:
    """Write one finished member (one chunk per variable) including its ``finished`` flag."""
    data = {
        "xyz": (("frame", "member", "atom", "axis"), xyz[np.newaxis, np.newaxis].astype(np.float32)),
        "start_xyz": (("frame", "member", "atom", "axis"),
                      start_xyz[np.newaxis, np.newaxis].astype(np.float32)),
        "finished": (("frame", "member"), np.ones((1, 1), bool)),
    }
    for metric in METRICS:
        data[metric] = (("frame", "member"), np.array([[metrics.get(metric, np.nan)]], dtype=float))
    region = {"frame": slice(frame, frame + 1), "member": slice(member, member + 1)}
    xr.Dataset(data).to_zarr(str(path), region=region, zarr_format=2)
