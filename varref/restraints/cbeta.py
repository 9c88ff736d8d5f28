"""C-beta restraints: two torsions per amino acid that hold CB at its ideal place.

As Phenix's ``c_beta_restraints`` (cctbx ``mmtbx/geometry_restraints/c_beta.py``): every
amino acid with N, CA, C and CB (so not glycine) gets the torsions N–C–CA–CB and C–N–CA–CB,
harmonic with sigma 2.5°. Both are improper-like dihedrals about the CA–C and CA–N
directions; together they fix the direction of CA→CB relative to the backbone, which is
what the MolProbity C-beta deviation (:mod:`varref.validation.cbeta`) measures. The ideal
values are MolProbity's/Phenix's table (Lovell et al. 2003): Ala, Pro, the beta-branched
Val/Thr/Ile, and one pair for every other residue.

Differences from Phenix, deliberately: D-amino acids (gemmi kind ``AAD``) are restrained
with the mirrored values (both torsions negated) rather than skipped; modified amino acids
take the values of their parent (gemmi's one-letter code, e.g. HYP → Pro). As in Phenix, a
residue whose model handedness at CA disagrees with its name (the N–C–CA–CB torsion has the
wrong sign) is skipped: pulling it through 240° is the chirality restraint's job.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import gemmi
import numpy as np

from varref.model import Model

#: Phenix's default sigma of both C-beta torsions, degrees.
CBETA_SIGMA = 2.5

#: (N–C–CA–CB, C–N–CA–CB) ideal torsions in degrees for L-amino acids (Phenix
#: ``get_cb_target_angle_pair``; the same numbers as MolProbity's cbetadev).
CBETA_IDEAL_TORSIONS = {
    "ALA": (122.9, -122.6),
    "PRO": (115.1, -120.7),
    "VAL": (123.4, -122.0),
    "THR": (123.4, -122.0),
    "ILE": (123.4, -122.0),
}
CBETA_IDEAL_DEFAULT = (122.8, -122.6)

_PARENT_BY_CODE = {"A": "ALA", "P": "PRO", "V": "VAL", "T": "THR", "I": "ILE"}


class CBetaRestraints(NamedTuple):
    """Torsion restraints of the C-beta term.

    ``atoms`` (n, 4) int64 rows ``(N, C, CA, CB)`` then ``(C, N, CA, CB)`` per residue;
    ``ideal`` and ``sigma`` (n,) degrees; ``residue`` (n,) residue index of each row;
    ``skipped`` residue indices left out because their CA handedness contradicts their name.
    """

    atoms: np.ndarray
    ideal: np.ndarray
    sigma: np.ndarray
    residue: np.ndarray
    skipped: np.ndarray


@lru_cache(maxsize=None)
def cbeta_ideal_torsions(residue_name: str) -> tuple[float, float] | None:
    """(N–C–CA–CB, C–N–CA–CB) ideal torsions for a residue name, None if not an amino acid.

    D-amino acids get the mirror image of their L parent.
    """
    info = gemmi.find_tabulated_residue(residue_name)
    if info is None or not info.is_amino_acid():
        return None
    name = residue_name if residue_name in CBETA_IDEAL_TORSIONS else \
        _PARENT_BY_CODE.get(info.one_letter_code.upper(), "")
    ideal = CBETA_IDEAL_TORSIONS.get(name, CBETA_IDEAL_DEFAULT)
    if info.kind == gemmi.ResidueKind.AAD:
        return -ideal[0], -ideal[1]
    return ideal


def _dihedrals(xyz: np.ndarray, quads: np.ndarray) -> np.ndarray:
    """Dihedrals (degrees) of atom quadruples for coordinates (..., N, 3) → (..., m)."""
    p0, p1, p2, p3 = (xyz[..., quads[:, c], :] for c in range(4))
    b1, b2, b3 = p1 - p0, p2 - p1, p3 - p2
    m = np.cross(b1, b2)
    n = np.cross(b2, b3)
    y = np.linalg.norm(b2, axis=-1) * np.sum(b1 * n, axis=-1)
    return np.degrees(np.arctan2(y, np.sum(m * n, axis=-1)))


def cbeta_restraints(model: Model, xyz: np.ndarray | None = None,
                     sigma: float = CBETA_SIGMA) -> CBetaRestraints:
    """The C-beta torsion restraints of ``model``.

    Parameters
    ----------
    model
        Atom names, residue names and residue indices are read; atom indices in the result
        are rows of ``model.xyz``.
    xyz
        Coordinates, (N, 3) or (K, N, 3), used only to skip residues of the wrong
        handedness (wrong in any of the K sets); default ``model.xyz``.
    sigma
        Sigma of every torsion, degrees.

    Returns
    -------
    CBetaRestraints
    """
    xyz = model.xyz if xyz is None else np.asarray(xyz, dtype=np.float64)
    n_residues = model.n_residues
    backbone = {name: np.full(n_residues, -1, dtype=np.int64) for name in ("N", "CA", "C", "CB")}
    for atom in np.flatnonzero(np.isin(model.atom_name, list(backbone))):
        backbone[str(model.atom_name[atom])][model.residue_index[atom]] = atom
    n, ca, c, cb = (backbone[name] for name in ("N", "CA", "C", "CB"))
    first_atom = np.unique(model.residue_index, return_index=True)[1]
    names = model.residue_name[first_atom]
    ideal = np.array([cbeta_ideal_torsions(str(name)) or (np.nan, np.nan) for name in names],
                     dtype=np.float64).reshape(-1, 2)
    candidates = np.flatnonzero((n >= 0) & (ca >= 0) & (c >= 0) & (cb >= 0)
                                & np.isfinite(ideal[:, 0]))
    right_hand = np.ones(len(candidates), dtype=bool)
    if len(candidates):
        quads = np.stack([n[candidates], c[candidates], ca[candidates], cb[candidates]], axis=1)
        measured = _dihedrals(xyz, quads).reshape(-1, len(candidates))
        # handedness: the N–C–CA–CB torsion has the sign of its ideal (+ for L, − for D)
        right_hand = np.all(np.sign(measured) == np.sign(ideal[candidates, 0]), axis=0)
    residues = candidates[right_hand]
    atoms = np.empty((2 * len(residues), 4), dtype=np.int64)
    atoms[0::2] = np.stack([n[residues], c[residues], ca[residues], cb[residues]], axis=1)
    atoms[1::2] = np.stack([c[residues], n[residues], ca[residues], cb[residues]], axis=1)
    return CBetaRestraints(
        atoms=atoms,
        ideal=ideal[residues].reshape(-1),
        sigma=np.full(len(atoms), float(sigma)),
        residue=np.repeat(residues, 2),
        skipped=candidates[~right_hand],
    )
