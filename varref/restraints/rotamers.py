"""Side-chain chi angles, the shipped rotamer library and nearest-rotamer assignment.

The library (``varref/data/rotamer_library.json``, built by ``tools/make_rotamer_library.py``)
holds, for each of the 18 amino acids with chi angles, the named rotamers of the MolProbity
Top8000 rotamer tables (Hintze et al. 2016): per chi a central value and a width (the
table's esd), degrees. MSE uses MET's rotamers (SE in place of SD), as validation does.

Chi definitions, atom lookup and the symmetric last chi are those of
:mod:`varref.validation.rotamers` (MolProbity's ``sidechain_angles.props``): the last chi of
Asp (chi2), Glu (chi3), Phe and Tyr (chi2) ends in one of two equivalent atoms, so it is
compared modulo 180° (period 2).

Nearest rotamer: the one with the smallest esd-normalised periodic distance

    d² = Σ_i (Δ_i / s_i)²,   Δ_i = wrap_p(χ_i − c_i) ∈ (−180/p, 180/p],

c_i and s_i the rotamer's central value and esd. Normalising by the esd keeps a chi with a
broad distribution (Gln chi3, esd up to 75°) from outvoting the well-defined chi1.

Basin rule: a side chain is *in the basin* of its nearest rotamer when every chi satisfies
``|Δ_i| <= max(BASIN_ESDS · s_i, BASIN_MIN)`` = max(3 esd, 40°). On the deposited models
1ubq, 1crn and 6OUT this holds for 98–100 % of the side chains MolProbity's grids call
favoured or allowed; with (3 esd, 30°) it would be 94–99 % (see docs/methods-restraints.md).
A side chain in no rotamer's basin is treated as a rotamer outlier when the Top8000 grids
are not available (see :mod:`varref.refinement.rotamer_fit`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from os import PathLike
from pathlib import Path
from typing import NamedTuple

import numpy as np

from varref.model import Model
from varref.validation.residues import ResidueTable, dihedrals_of
from varref.validation.rotamers import CHI_ATOMS

LIBRARY_FILE = "rotamer_library.json"
#: Most chis of any residue (Arg, Lys).
MAX_CHI = 4
#: Basin half-width per chi: max(BASIN_ESDS × esd, BASIN_MIN degrees).
BASIN_ESDS = 3.0
BASIN_MIN = 40.0


@dataclass(frozen=True)
class ResidueRotamers:
    """The rotamers of one residue type.

    Attributes
    ----------
    resname : str
    names : tuple of str
        Rotamer names (``"mt"``, ``"ptp85"``), by decreasing Top8000 frequency.
    chi, sigma : (m, n_chi) float64
        Central values and esds, degrees; a symmetric last chi is in [0, 180).
    frequency : (m,) float64
        Percent of the residue type's Top8000 side chains in each rotamer.
    period : (n_chi,) int64
        1, or 2 for the symmetric last chi.
    """

    resname: str
    names: tuple[str, ...]
    chi: np.ndarray
    sigma: np.ndarray
    frequency: np.ndarray
    period: np.ndarray

    @property
    def n_chi(self) -> int:
        return self.chi.shape[1]

    def __len__(self) -> int:
        return len(self.names)

    def basin_half_width(self) -> np.ndarray:
        """(m, n_chi) basin half-widths, degrees (module docstring)."""
        return np.maximum(BASIN_ESDS * self.sigma, BASIN_MIN)


@dataclass(frozen=True)
class RotamerLibrary:
    """Rotamers per residue name; ``aliases`` map e.g. MSE to MET."""

    residues: dict[str, ResidueRotamers]
    aliases: dict[str, str]
    source: str

    def get(self, resname: str) -> ResidueRotamers | None:
        """The rotamers of ``resname`` (after aliasing), None for residues without chis."""
        return self.residues.get(self.aliases.get(resname, resname))


def load_rotamer_library(path: str | PathLike | None = None) -> RotamerLibrary:
    """The rotamer library shipped with varref, or the JSON file ``path``."""
    if path is None:
        with resources.as_file(resources.files("varref.data").joinpath(LIBRARY_FILE)) as shipped:
            return _load_cached(str(shipped))
    return _load_cached(str(Path(path).resolve()))


@lru_cache(maxsize=4)
def _load_cached(path: str) -> RotamerLibrary:
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    residues = {}
    for resname, entry in data["residues"].items():
        rotamers = entry["rotamers"]
        n_chi = int(entry["n_chi"])
        if n_chi != len(CHI_ATOMS[resname]):
            raise ValueError(f"{path}: {resname} has {n_chi} chis, validation defines "
                             f"{len(CHI_ATOMS[resname])}")
        period = np.ones(n_chi, dtype=np.int64)
        if entry["symmetric_last_chi"]:
            period[-1] = 2
        residues[resname] = ResidueRotamers(
            resname=resname,
            names=tuple(r["name"] for r in rotamers),
            chi=np.array([r["chi"] for r in rotamers], dtype=np.float64).reshape(-1, n_chi),
            sigma=np.array([r["sigma"] for r in rotamers], dtype=np.float64).reshape(-1, n_chi),
            frequency=np.array([r["frequency"] for r in rotamers], dtype=np.float64),
            period=period,
        )
    return RotamerLibrary(residues, dict(data.get("aliases", {})), str(data.get("source", path)))


def chi_deltas(chis: np.ndarray, centres: np.ndarray, period: np.ndarray) -> np.ndarray:
    """``chis − centres`` wrapped to (−180/p, 180/p] per chi; broadcasts over leading axes."""
    span = 360.0 / np.asarray(period, dtype=np.float64)
    delta = np.asarray(chis, dtype=np.float64) - centres
    return delta - span * np.ceil(delta / span - 0.5)


def nearest_rotamer(rotamers: ResidueRotamers, chis: np.ndarray) -> tuple[int, float, np.ndarray]:
    """Index of the nearest rotamer (module docstring), its normalised distance d, and the
    residuals Δ (n_chi,) to its central values, degrees. Ties go to the more frequent."""
    delta = chi_deltas(chis, rotamers.chi, rotamers.period)
    distance = np.sqrt(np.sum((delta / rotamers.sigma) ** 2, axis=1))
    best = int(np.argmin(distance))  # argmin keeps the first: library order is by frequency
    return best, float(distance[best]), delta[best]


def in_basin(rotamers: ResidueRotamers, index: int, delta: np.ndarray) -> bool:
    """Whether residuals ``delta`` to rotamer ``index`` lie inside its basin."""
    return bool(np.all(np.abs(delta) <= rotamers.basin_half_width()[index]))


class SideChainChis(NamedTuple):
    """Chi angles and nearest rotamers of a model's amino-acid side chains.

    One row per amino acid with chi angles whose chi atoms are all present (residues with
    missing side-chain atoms are left out, as MolProbity skips them), in residue order.

    Attributes
    ----------
    residue : (R,) int64
        Residue index (``Model.residue_index``).
    resname : (R,) str
        Residue name as in the model (MSE stays MSE).
    atoms : (R, 4, 4) int64
        chi1..chi4 atom quadruples; rows beyond the residue's chis are -1.
    n_chi : (R,) int64
    chis : (R, 4) float64
        Chi angles, degrees in (−180, 180]; NaN beyond n_chi.
    period : (R, 4) int64
        1, or 2 for the symmetric last chi (1 beyond n_chi).
    rotamer : (R,) int64
        Index of the nearest rotamer in the residue type's library entry.
    rotamer_name : (R,) str
    delta : (R, 4) float64
        Chi minus the rotamer's central value, wrapped by period; NaN beyond n_chi.
    distance : (R,) float64
        Esd-normalised distance to the nearest rotamer.
    in_basin : (R,) bool
        Every chi within the basin of the nearest rotamer.
    """

    residue: np.ndarray
    resname: np.ndarray
    atoms: np.ndarray
    n_chi: np.ndarray
    chis: np.ndarray
    period: np.ndarray
    rotamer: np.ndarray
    rotamer_name: np.ndarray
    delta: np.ndarray
    distance: np.ndarray
    in_basin: np.ndarray

    def __len__(self) -> int:
        return len(self.residue)


def chi_atom_quadruples(residues: ResidueTable, residue: int) -> np.ndarray | None:
    """(n_chi, 4) atom indices of one residue's chis (validation's definitions); None when
    the residue type has no chi or an atom is missing."""
    quadruples = CHI_ATOMS.get(str(residues.name[residue]))
    if quadruples is None:
        return None
    indices = np.array([[residues.atom(residue, name) for name in quad] for quad in quadruples],
                       dtype=np.int64)
    return None if np.any(indices < 0) else indices


def side_chain_chis(model: Model, xyz: np.ndarray | None = None,
                    library: RotamerLibrary | None = None,
                    residues: ResidueTable | None = None) -> SideChainChis:
    """Chi atoms, chi values and the nearest library rotamer of every amino acid.

    Parameters
    ----------
    model
        Names and residue indices (and the coordinates when ``xyz`` is None).
    xyz
        (N, 3) coordinates to measure instead of ``model.xyz``.
    library
        Default: the shipped library (:func:`load_rotamer_library`).
    residues
        The model's residue table, if already built.
    """
    library = load_rotamer_library() if library is None else library
    residues = ResidueTable(model) if residues is None else residues
    xyz = model.xyz if xyz is None else np.asarray(xyz, dtype=np.float64)
    rows = []
    for r in np.flatnonzero(residues.is_amino_acid):
        resname = str(residues.name[r])
        rotamers = library.get(resname)
        if rotamers is None:
            continue
        quadruples = chi_atom_quadruples(residues, int(r))
        if quadruples is None:
            continue
        rows.append((int(r), resname, rotamers, quadruples))
    n = len(rows)
    atoms = np.full((n, MAX_CHI, 4), -1, dtype=np.int64)
    n_chi = np.zeros(n, dtype=np.int64)
    chis = np.full((n, MAX_CHI), np.nan)
    period = np.ones((n, MAX_CHI), dtype=np.int64)
    rotamer = np.zeros(n, dtype=np.int64)
    names = []
    delta = np.full((n, MAX_CHI), np.nan)
    distance = np.zeros(n)
    basin = np.zeros(n, dtype=bool)
    for row, (_, _, rotamers, quadruples) in enumerate(rows):
        atoms[row, :len(quadruples)] = quadruples
        n_chi[row] = len(quadruples)
    # every chi of every residue in one call (NaN where a residue has fewer chis)
    if n:
        chis[:] = dihedrals_of(xyz, atoms.reshape(-1, 4)).reshape(n, MAX_CHI)
    for row, (_, _, rotamers, quadruples) in enumerate(rows):
        k = len(quadruples)
        period[row, :k] = rotamers.period
        index, d, residual = nearest_rotamer(rotamers, chis[row, :k])
        rotamer[row], distance[row], delta[row, :k] = index, d, residual
        names.append(rotamers.names[index])
        basin[row] = in_basin(rotamers, index, residual)
    return SideChainChis(
        residue=np.array([r[0] for r in rows], dtype=np.int64),
        resname=np.array([r[1] for r in rows], dtype=str) if n else np.zeros(0, str),
        atoms=atoms, n_chi=n_chi, chis=chis, period=period, rotamer=rotamer,
        rotamer_name=np.array(names, dtype=str) if n else np.zeros(0, str),
        delta=delta, distance=distance, in_basin=basin,
    )
