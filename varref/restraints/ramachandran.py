"""Ramachandran restraints: which residues, which class, and the potential table.

A residue is restrained when it is an amino acid peptide-linked to both neighbours in its
chain (C(i-1)-N(i) and C(i)-N(i+1) at most
:data:`~varref.validation.residues.PEPTIDE_BOND_MAX` = 2 Å apart) and has the five backbone
atoms C(i-1), N, CA, C, N(i+1): exactly the residues MolProbity's Ramachandran validation
evaluates. Its class (general, Gly, cis-Pro, trans-Pro, pre-Pro, Ile/Val) is assigned by
:func:`varref.validation.ramachandran.ramachandran_classes` — the validation's own rule,
reused so that restraint and validation can never disagree — from the coordinates given
(cis- vs trans-Pro by the omega of the starting model; a restraint keeps its class while it
is refined).

The potential (``varref/data/ramachandran_potential.npz``, derived from the Top8000 grids by
``tools/make_ramachandran_potential.py``; equation in ``docs/methods-restraints.md``) is
zero on the MolProbity-favoured region of each class (at every favoured grid point and in
every 2° cell whose corners are all favoured) and rises with the distance outside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from os import PathLike
from pathlib import Path

import numpy as np

from varref.model import Model
from varref.validation.ramachandran import RAMA_CLASSES, backbone_dihedrals, ramachandran_classes
from varref.validation.residues import ResidueTable

#: File name of the shipped potential inside :mod:`varref.data`.
POTENTIAL_FILE = "ramachandran_potential.npz"


@dataclass(frozen=True, eq=False)
class RamachandranPotential:
    """The potential table V_c(phi, psi) of every class.

    Attributes
    ----------
    table : (n_classes, n, n) float64
        V at the nodes, C-contiguous (the engine kernel's input).
    classes : tuple of str
        Class name of each row (names of :data:`~varref.validation.ramachandran.RAMA_CLASSES`).
    origin, spacing : float
        Node k of either axis is at ``origin + k * spacing`` degrees; ``n * spacing = 360``.
    delta, outlier_cost : float
        Parameters the table was built with (see the docs).
    source : str
        Provenance of the Top8000 grids it was derived from.
    """

    table: np.ndarray
    classes: tuple[str, ...]
    origin: float
    spacing: float
    delta: float
    outlier_cost: float
    source: str

    def class_index(self, names: np.ndarray) -> np.ndarray:
        """Row of the table for each class name."""
        lookup = {name: k for k, name in enumerate(self.classes)}
        return np.array([lookup[str(name)] for name in names], dtype=np.int64)


def load_ramachandran_potential(path: str | PathLike | None = None) -> RamachandranPotential:
    """Read the potential table (default: the one shipped in :mod:`varref.data`)."""
    if path is None:
        with resources.as_file(resources.files("varref.data").joinpath(POTENTIAL_FILE)) as shipped:
            return _load_cached(str(shipped))
    return _load_cached(str(Path(path).resolve()))


@lru_cache(maxsize=4)
def _load_cached(path: str) -> RamachandranPotential:
    with np.load(path, allow_pickle=False) as data:
        table = np.ascontiguousarray(data["potential"], dtype=np.float64)
        classes = tuple(str(c) for c in data["classes"])
        origin = float(data["origin"])
        spacing = float(data["spacing"])
        potential = RamachandranPotential(table, classes, origin, spacing, float(data["delta"]),
                                          float(data["outlier_cost"]), str(data["source"]))
    n_classes, n_phi, n_psi = table.shape
    # the kernel assumes one periodic grid for both axes
    if n_phi != n_psi or not np.isclose(n_phi * spacing, 360.0) or n_classes != len(classes):
        raise ValueError(f"{path}: not a periodic Ramachandran table ({table.shape}, spacing {spacing})")
    if set(classes) != set(RAMA_CLASSES):
        raise ValueError(f"{path}: classes {classes} differ from {RAMA_CLASSES}")
    table.setflags(write=False)
    return potential


@dataclass(frozen=True, eq=False)
class RamachandranResidues:
    """Restrained residues of a model.

    Attributes
    ----------
    atoms : (n, 5) int64
        ``(C_prev, N, CA, C, N_next)`` atom indices per residue.
    class_name : (n,) str
        MolProbity class of each residue.
    residue : (n,) int64
        Residue index (``Model.residue_index``).
    label : (n,) str
        ``"A/GLY 12"`` style label, for messages.
    """

    atoms: np.ndarray
    class_name: np.ndarray
    residue: np.ndarray
    label: np.ndarray

    def __len__(self) -> int:
        return len(self.atoms)


def find_ramachandran_residues(model: Model, xyz: np.ndarray | None = None) -> RamachandranResidues:
    """Residues with a defined phi and psi, their five atoms and their class.

    Parameters
    ----------
    model
        Altlocs already resolved (as every :class:`Model`).
    xyz
        (N, 3) coordinates to judge peptide links and cis/trans-Pro by; default the model's.
    """
    if xyz is not None:
        model = model.with_xyz(xyz)
    residues = ResidueTable(model)
    omega = backbone_dihedrals(residues)["omega"]
    classes = ramachandran_classes(residues, omega)
    prev, nxt = residues.previous, residues.following
    n, ca, c = residues.atoms("N"), residues.atoms("CA"), residues.atoms("C")
    linked = residues.is_amino_acid & (prev >= 0) & (nxt >= 0)
    atoms = np.stack([np.where(prev >= 0, c[np.maximum(prev, 0)], -1), n, ca, c,
                      np.where(nxt >= 0, n[np.maximum(nxt, 0)], -1)], axis=1)
    chosen = np.flatnonzero(linked & np.all(atoms >= 0, axis=1))
    return RamachandranResidues(
        atoms=np.ascontiguousarray(atoms[chosen], dtype=np.int64),
        class_name=classes[chosen],
        residue=chosen.astype(np.int64),
        label=residues.label[chosen] if len(chosen) else np.zeros(0, dtype=str),
    )
