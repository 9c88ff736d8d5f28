"""Per-residue view of a :class:`~varref.model.Model` for validation: atom lookup by name,
peptide connectivity, and dihedral angles.

Every validation module works on residue indices (``Model.residue_index``) and asks this
table for "the CA of residue r" or "the residue before r in the chain"; keeping that in
one place keeps the metric modules short.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import gemmi
import numpy as np

from varref.model import Model

#: C(i-1)-N(i) distances (Å) below this are peptide bonds, as in cctbx's residue linking
#: (``conformation_dependent_library``: d < 2 Å) that MolProbity's ramalyze uses.
PEPTIDE_BOND_MAX = 2.0


@lru_cache(maxsize=None)
def is_amino_acid_name(name: str) -> bool:
    """True for residue names gemmi's table lists as amino acids (standard or modified)."""
    info = gemmi.find_tabulated_residue(name)
    return bool(info is not None and info.is_amino_acid())


@dataclass(eq=False)
class ResidueTable:
    """Residues of a model with name lookup and peptide links.

    Attributes
    ----------
    model : Model
    name, chain, icode, label : (R,) str
    number : (R,) int64
    is_amino_acid : (R,) bool
    previous, following : (R,) int64
        Index of the peptide-linked residue before/after (-1: none, chain break or end).
    """

    model: Model
    name: np.ndarray = field(init=False)
    chain: np.ndarray = field(init=False)
    number: np.ndarray = field(init=False)
    icode: np.ndarray = field(init=False)
    label: np.ndarray = field(init=False)
    is_amino_acid: np.ndarray = field(init=False)
    previous: np.ndarray = field(init=False)
    following: np.ndarray = field(init=False)
    _atoms_by_name: dict[str, np.ndarray] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        model = self.model
        n_residues = model.n_residues
        first_atom = np.unique(model.residue_index, return_index=True)[1]
        self.name = model.residue_name[first_atom]
        self.chain = model.chain_id[first_atom]
        self.number = model.residue_number[first_atom]
        self.icode = np.array([c.strip() for c in model.insertion_code[first_atom]], dtype=str) \
            if n_residues else np.zeros(0, dtype=str)
        self.label = np.array(model.residue_labels(), dtype=str) if n_residues else np.zeros(0, str)
        self.is_amino_acid = np.array([is_amino_acid_name(n) for n in self.name], dtype=bool)
        self._index_atoms()
        self.previous = np.full(n_residues, -1, dtype=np.int64)
        self.following = np.full(n_residues, -1, dtype=np.int64)
        if n_residues > 1:
            carbonyl_c = self.atoms("C")[:-1]
            amide_n = self.atoms("N")[1:]
            candidate = (
                (self.chain[:-1] == self.chain[1:])
                & self.is_amino_acid[:-1] & self.is_amino_acid[1:]
                & (carbonyl_c >= 0) & (amide_n >= 0)
            )
            distance = np.full(n_residues - 1, np.inf)
            distance[candidate] = np.linalg.norm(
                model.xyz[carbonyl_c[candidate]] - model.xyz[amide_n[candidate]], axis=1)
            linked = np.flatnonzero(distance < PEPTIDE_BOND_MAX)
            self.previous[linked + 1] = linked
            self.following[linked] = linked + 1

    def _index_atoms(self) -> None:
        model = self.model
        table: dict[str, np.ndarray] = {}
        # atoms later in a residue win for duplicate names (none in a valid model)
        for atom, (name, residue) in enumerate(zip(model.atom_name, model.residue_index)):
            column = table.get(name)
            if column is None:
                column = table[name] = np.full(model.n_residues, -1, dtype=np.int64)
            column[residue] = atom
        self._atoms_by_name = table

    @property
    def n_residues(self) -> int:
        return len(self.name)

    def atoms(self, name: str) -> np.ndarray:
        """(R,) atom index of atom ``name`` in each residue, -1 where absent."""
        column = self._atoms_by_name.get(name)
        if column is None:
            return np.full(self.n_residues, -1, dtype=np.int64)
        return column

    def atom(self, residue: int, name: str) -> int:
        """Atom index of ``name`` in ``residue``, -1 when absent."""
        return int(self.atoms(name)[residue])

    def identity(self, residue: int) -> dict[str, object]:
        """Chain, number, insertion code, name and label of one residue (for tables)."""
        return {
            "chain": str(self.chain[residue]),
            "resseq": int(self.number[residue]),
            "icode": str(self.icode[residue]),
            "resname": str(self.name[residue]),
            "label": str(self.label[residue]),
        }


def dihedral_deg(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, p3: np.ndarray) -> np.ndarray:
    """Dihedral angles (degrees, IUPAC sign, range (-180, 180]) of point quadruples (m, 3)."""
    b0 = np.asarray(p0, dtype=np.float64) - p1
    b1 = np.asarray(p2, dtype=np.float64) - p1
    b2 = np.asarray(p3, dtype=np.float64) - p2
    b1_unit = b1 / np.linalg.norm(b1, axis=-1, keepdims=True)
    v = b0 - np.sum(b0 * b1_unit, axis=-1, keepdims=True) * b1_unit
    w = b2 - np.sum(b2 * b1_unit, axis=-1, keepdims=True) * b1_unit
    x = np.sum(v * w, axis=-1)
    y = np.sum(np.cross(b1_unit, v) * w, axis=-1)
    return np.degrees(np.arctan2(y, x))


def dihedrals_of(xyz: np.ndarray, quadruples: np.ndarray) -> np.ndarray:
    """Dihedrals (degrees) of atom-index quadruples (m, 4); NaN where any index is -1."""
    quadruples = np.asarray(quadruples, dtype=np.int64).reshape(-1, 4)
    result = np.full(len(quadruples), np.nan)
    ok = np.all(quadruples >= 0, axis=1)
    if ok.any():
        q = quadruples[ok]
        result[ok] = dihedral_deg(xyz[q[:, 0]], xyz[q[:, 1]], xyz[q[:, 2]], xyz[q[:, 3]])
    return result


def place_atom(a: np.ndarray, b: np.ndarray, c: np.ndarray, bond: float, angle_deg: float,
               torsion_deg: np.ndarray | float) -> np.ndarray:
    """Position(s) of atom D with |CD| = bond, angle B-C-D and dihedral A-B-C-D given.

    The natural-extension reference frame construction; ``a, b, c`` are (3,) or (m, 3)
    and ``torsion_deg`` a scalar or (k,) array, giving (k, 3) (or (m, 3)) positions.
    """
    a, b, c = (np.asarray(p, dtype=np.float64) for p in (a, b, c))
    bc = c - b
    bc /= np.linalg.norm(bc, axis=-1, keepdims=True)
    normal = np.cross(b - a, bc)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    in_plane = np.cross(normal, bc)
    angle = np.radians(angle_deg)
    torsion = np.radians(np.asarray(torsion_deg, dtype=np.float64))
    # D in the local frame: along -bc rotated by the bond angle, then about bc by torsion
    d_local = np.stack([-np.cos(angle) * np.ones_like(torsion),
                        np.sin(angle) * np.cos(torsion),
                        np.sin(angle) * np.sin(torsion)], axis=-1)
    frame = np.stack([bc, in_plane, normal], axis=-2)  # rows: x, y, z axes
    return c + bond * np.einsum("...i,...ij->...j", d_local, frame)
