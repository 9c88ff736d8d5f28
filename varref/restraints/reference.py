"""Reference-model torsion restraints: which torsions, and their values in a reference model.

Which torsions (the "proper torsions" of the model): every torsion restraint of the model's
monomer-library restraints (``Restraints.torsions``: side-chain chi angles, the backbone
phi/psi/omega of the peptide links, ring and disulfide torsions, the torsions of nucleic
acids and ligands) whose four atoms are not hydrogens, plus phi, psi and omega across every
peptide bond C(i)–N(i+1) of the bond list when the library did not already define them
(e.g. links without backbone torsions). Each torsion appears once. This is the set phenix's
``reference_model`` restrains (its dihedral proxies without hydrogens, plus phi/psi).

Matching: a model atom corresponds to the reference atom with the same chain name, residue
number, insertion code and atom name (the residue name is not compared, so a point mutant
still gets its backbone and common side-chain torsions). A torsion is restrained only when
all four atoms have a counterpart and the reference geometry defines it (no three
collinear atoms). The reference may be the starting model itself or another file (a
predicted model, a homologue renumbered to match) with different residue ranges.

Chemically equivalent atoms: for the torsions that end in one of two equivalent atoms about
the bond to their common parent — Asp OD1/OD2 (about CB–CG), Glu OE1/OE2 (CG–CD), Phe and
Tyr CD1/CD2 (CB–CG), Arg NH1/NH2 (NE–CZ) — swapping the names changes the torsion by 180°,
so these torsions get period 2 and a reference with the other naming restrains equally.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from varref.model import Model
from varref.restraints.arrays import Restraints
from varref.restraints.builder import build_restraints

#: residue → (parent atom, the two equivalent atoms bonded to it).
EQUIVALENT_ENDS = {
    "ASP": ("CG", frozenset({"OD1", "OD2"})),
    "GLU": ("CD", frozenset({"OE1", "OE2"})),
    "PHE": ("CG", frozenset({"CD1", "CD2"})),
    "TYR": ("CG", frozenset({"CD1", "CD2"})),
    "ARG": ("CZ", frozenset({"NH1", "NH2"})),
}

#: |m|² or |n|² (Å⁴) below which a reference torsion is undefined (three atoms collinear).
_DEGENERATE = 1e-8


class ReferenceTorsions(NamedTuple):
    """Reference torsion restraints of a model.

    ``atoms`` (n, 4) int64 model atom indices; ``ideal`` (n,) torsions measured in the
    reference, degrees in (−180, 180]; ``period`` (n,) int64, 1 or 2 (equivalent atoms);
    ``n_candidates`` torsions of the model considered; ``n_unmatched`` of them skipped
    because an atom had no counterpart in the reference or the reference torsion is
    undefined.
    """

    atoms: np.ndarray
    ideal: np.ndarray
    period: np.ndarray
    n_candidates: int
    n_unmatched: int


def _canonical(rows: np.ndarray) -> np.ndarray:
    """Each row (i, j, k, l) or its reverse (l, k, j, i), whichever is lexicographically
    smaller: the same torsion written in either direction gets one key."""
    forward = (rows[:, 0] < rows[:, 3]) | ((rows[:, 0] == rows[:, 3]) & (rows[:, 1] <= rows[:, 2]))
    return np.where(forward[:, None], rows, rows[:, ::-1])


def _peptide_torsions(model: Model, restraints: Restraints) -> np.ndarray:
    """phi(i+1), psi(i) and omega across every bonded C(i)–N(i+1), as (m, 4) atom rows."""
    name, residue = model.atom_name, model.residue_index
    bonds = restraints.bonds.atoms
    if len(bonds) == 0:
        return np.zeros((0, 4), dtype=np.int64)
    # orient each bond as (C, N) and keep those joining two residues
    c_atom = np.where(name[bonds[:, 0]] == "C", bonds[:, 0], bonds[:, 1])
    n_atom = np.where(name[bonds[:, 0]] == "C", bonds[:, 1], bonds[:, 0])
    peptide = (name[c_atom] == "C") & (name[n_atom] == "N") & (residue[c_atom] != residue[n_atom])
    lookup = {(int(residue[a]), str(name[a])): a for a in
              np.flatnonzero(np.isin(name, ("N", "CA", "C")))}
    rows = []
    for c, n in zip(c_atom[peptide], n_atom[peptide]):
        before, after = int(residue[c]), int(residue[n])
        n_before, ca_before = lookup.get((before, "N")), lookup.get((before, "CA"))
        ca_after, c_after = lookup.get((after, "CA")), lookup.get((after, "C"))
        if ca_before is not None and ca_after is not None:
            rows.append((ca_before, c, n, ca_after))  # omega
            if n_before is not None:
                rows.append((n_before, ca_before, c, n))  # psi of the residue before
            if c_after is not None:
                rows.append((c, n, ca_after, c_after))  # phi of the residue after
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def proper_torsions(model: Model, restraints: Restraints) -> np.ndarray:
    """The torsions restrained to a reference (see the module docstring), (n, 4) int64.

    Parameters
    ----------
    model
        The refined model (names, residue indices, hydrogen flags).
    restraints
        Its monomer-library restraints (:func:`varref.restraints.build_restraints`).
    """
    library = np.asarray(restraints.torsions.atoms, dtype=np.int64).reshape(-1, 4)
    rows = np.concatenate([library, _peptide_torsions(model, restraints)])
    rows = rows[~np.any(model.is_hydrogen[rows], axis=1)] if len(rows) else rows
    if len(rows) == 0:
        return rows
    # one row per torsion: library order first, the added backbone torsions after
    _, first = np.unique(_canonical(rows), axis=0, return_index=True)
    return rows[np.sort(first)]


def _periods(model: Model, rows: np.ndarray) -> np.ndarray:
    period = np.ones(len(rows), dtype=np.int64)
    names = model.atom_name
    for r, (a, b, c, d) in enumerate(rows):
        for end, next_to_end in ((d, c), (a, b)):
            rule = EQUIVALENT_ENDS.get(str(model.residue_name[end]))
            if rule is None or model.residue_index[end] != model.residue_index[next_to_end]:
                continue
            parent, equivalent = rule
            if str(names[end]) in equivalent and str(names[next_to_end]) == parent:
                period[r] = 2
    return period


def _atom_keys(model: Model) -> list[tuple[str, int, str, str]]:
    return [(str(c), int(n), str(i).strip(), str(a)) for c, n, i, a in
            zip(model.chain_id, model.residue_number, model.insertion_code, model.atom_name)]


def _torsions_deg(xyz: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dihedrals (degrees, (−180, 180]) of atom rows and whether each is defined."""
    p0, p1, p2, p3 = (xyz[rows[:, c]] for c in range(4))
    b1, b2, b3 = p1 - p0, p2 - p1, p3 - p2
    m = np.cross(b1, b2)
    n = np.cross(b2, b3)
    y = np.linalg.norm(b2, axis=1) * np.sum(b1 * n, axis=1)
    phi = np.degrees(np.arctan2(y, np.sum(m * n, axis=1)))
    phi = np.where(phi <= -180.0, phi + 360.0, phi)
    defined = (np.sum(m * m, axis=1) > _DEGENERATE) & (np.sum(n * n, axis=1) > _DEGENERATE)
    return phi, defined


def reference_torsions(model: Model, reference: Model,
                       restraints: Restraints | None = None) -> ReferenceTorsions:
    """Torsions of ``model`` with their values measured in ``reference``.

    Parameters
    ----------
    model
        The refined model; atom indices of the result are its rows.
    reference
        The reference model (may be ``model`` itself, or another file read with
        :func:`varref.model.read_model`).
    restraints
        The model's monomer-library restraints; built when not given.

    Returns
    -------
    ReferenceTorsions
    """
    if restraints is None:
        restraints = build_restraints(model)
    rows = proper_torsions(model, restraints)
    n_candidates = len(rows)
    empty = ReferenceTorsions(np.zeros((0, 4), np.int64), np.zeros(0), np.zeros(0, np.int64),
                              n_candidates, n_candidates)
    if n_candidates == 0:
        return empty
    index = {key: i for i, key in enumerate(_atom_keys(reference)) if not reference.is_hydrogen[i]}
    model_keys = _atom_keys(model)
    counterpart = np.array([index.get(key, -1) for key in model_keys], dtype=np.int64)
    reference_rows = counterpart[rows]
    matched = np.all(reference_rows >= 0, axis=1)
    if not matched.any():
        return empty
    ideal, defined = _torsions_deg(reference.xyz, reference_rows[matched])
    keep = np.flatnonzero(matched)[defined]
    return ReferenceTorsions(
        atoms=np.ascontiguousarray(rows[keep]),
        ideal=ideal[defined],
        period=_periods(model, rows[keep]),
        n_candidates=n_candidates,
        n_unmatched=n_candidates - len(keep),
    )
