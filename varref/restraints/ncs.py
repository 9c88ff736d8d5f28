"""Non-crystallographic symmetry (NCS): copies of one chain found automatically, and the
torsions they share.

Detection (:func:`find_ncs`). Polymer chains (protein or nucleic acid, at least
``MIN_RESIDUES`` residues with a Cα, or C4′ for nucleotides) are taken longest first; each
chain not yet placed starts a group as its first copy, and every later chain of the same
polymer type joins it when

1. its residue sequence, aligned to the first copy's with gemmi
   (:func:`gemmi.align_sequence_to_polymer`: BLOSUM62, gap opening free where the copy's
   chain is broken), is at least ``min_identity`` (95 %) identical over the aligned
   residue pairs, and
2. superposition (:func:`gemmi.superpose_positions`) confirms it: the best-fitting
   ``min_fraction`` (80 %) of the shorter copy's Cα fit with r.m.s.d. ≤ ``max_rmsd`` (2 Å).
   The core is found by iterative trimming: superpose all aligned pairs, keep the closest
   80 %, superpose again, until the core no longer changes.

The residues are matched by the alignment (so numbering, insertion codes, missing loops and
different chain lengths do not matter) and atoms within matched residues by name. Residues
of a copy that align to a gap in the first copy are not matched. Ligands, waters and chains
of other polymer types are not grouped.

Torsions (:func:`ncs_torsions`). Every proper torsion of the model
(:func:`varref.restraints.reference.proper_torsions`: backbone and side chain, heavy atoms)
whose four atoms lie in one copy is matched to the same torsion (the same matched residues
and atom names) in the other copies of its group; it is restrained among all copies that
have it, when at least two do. Side-chain atoms must also have the same residue name in
every copy, so a point mutant shares its backbone torsions but not its side chain.
Torsions ending in one of two equivalent atoms (Asp OD1/OD2, Glu, Phe, Tyr, Arg) have
period 2, as in :mod:`varref.restraints.reference`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import NamedTuple

import gemmi
import numpy as np

from varref.model import Model
from varref.restraints.arrays import Restraints
from varref.restraints.builder import build_restraints
from varref.restraints.reference import _periods, proper_torsions

#: Sequence identity over the aligned residue pairs for two chains to be copies.
MIN_IDENTITY = 0.95
#: Cα r.m.s.d. (Å) of the superposed core for a copy to be confirmed.
MAX_RMSD = 2.0
#: Fraction of the shorter chain's residues (with a Cα) in the superposed core.
MIN_FRACTION = 0.8
#: Chains with fewer residues with a Cα (or C4′) are not considered.
MIN_RESIDUES = 3

_PEPTIDE = (gemmi.PolymerType.PeptideL, gemmi.PolymerType.PeptideD)
_NUCLEIC = (gemmi.PolymerType.Dna, gemmi.PolymerType.Rna, gemmi.PolymerType.DnaRnaHybrid)

#: Backbone atom names: torsions made only of these are matched whatever the residue names.
BACKBONE_ATOMS = frozenset({
    "N", "CA", "C", "O", "OXT",
    "P", "OP1", "OP2", "O5'", "C5'", "C4'", "O4'", "C3'", "O3'", "C2'", "O2'", "C1'",
})

# The 3-mer prefilter below: a copy that is 95 % identical loses at most ~15 % of its
# residue-name 3-mers (each mismatch breaks three), so requiring half is a safe, cheap way
# to skip the alignment of unrelated chains (ribosomes have dozens).
_MIN_SHARED_TRIPLETS = 0.5


@dataclass(frozen=True)
class NcsCopy:
    """One copy of an NCS group.

    Attributes
    ----------
    chain : str
        Chain name.
    residues : (n_slots,) int64
        Model residue index (``Model.residue_index``) of this copy's residue matched to each
        residue of the group's first copy, -1 where it has none.
    rotation : (3, 3) float64
    translation : (3,) float64
        Operator from the first copy to this one: ``x_copy ≈ rotation @ x_first +
        translation`` (the identity for the first copy).
    rmsd : float
        Cα r.m.s.d. (Å) of the superposed core (the confirmation criterion).
    rmsd_all : float
        Cα r.m.s.d. (Å) over every aligned pair with the same operator.
    n_core, n_aligned : int
        Cα pairs in the core; residue pairs aligned with the first copy.
    identity : float
        Fraction of identical residue names over the aligned pairs.
    """

    chain: str
    residues: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    rmsd: float
    rmsd_all: float
    n_core: int
    n_aligned: int
    identity: float


@dataclass(frozen=True)
class NcsGroup:
    """Copies of one chain and their residue and atom correspondences.

    Attributes
    ----------
    copies : tuple of NcsCopy
        The first is the reference copy (the longest chain).
    columns : tuple of (int, str)
        Matched atoms: (residue of the first copy, 0-based along its polymer; atom name).
    atoms : (n_copies, n_columns) int64
        Model atom index of each copy's atom in each column, -1 where absent.
    """

    copies: tuple[NcsCopy, ...]
    columns: tuple[tuple[int, str], ...]
    atoms: np.ndarray

    @property
    def chains(self) -> list[str]:
        return [copy.chain for copy in self.copies]

    @property
    def residues(self) -> np.ndarray:
        """(n_copies, n_slots) model residue indices, -1 where a copy lacks the residue."""
        return np.array([copy.residues for copy in self.copies], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.copies)


class _Chain(NamedTuple):
    name: str
    polymer_type: gemmi.PolymerType
    span: gemmi.ResidueSpan
    residues: np.ndarray  # model residue index per polymer residue
    names: list[str]
    anchor: np.ndarray  # model atom index of the Cα/C4' per polymer residue, -1 if none


def _polymer_chains(model: Model) -> list[_Chain]:
    """The protein and nucleic-acid polymers of ``model``, longest first (file order among
    equals)."""
    st = model.structure
    n_template = sum(len(residue) for chain in st[0] for residue in chain)
    if n_template != model.n_atoms:
        raise ValueError(f"model arrays ({model.n_atoms} atoms) do not match its template "
                         f"structure ({n_template} atoms)")
    residue_start = np.searchsorted(model.residue_index, np.arange(model.n_residues + 1))
    chains = []
    counter = 0  # the model's residue index of the chain's first residue (file order)
    for chain in st[0]:
        span = chain.get_polymer()
        n_span = len(span)
        polymer_type = span.check_polymer_type() if n_span else gemmi.PolymerType.Unknown
        if polymer_type in _PEPTIDE + _NUCLEIC:
            # get_polymer() is the contiguous run of polymer residues starting at the first
            first = next(k for k, residue in enumerate(chain)
                         if residue.entity_type == gemmi.EntityType.Polymer)
            if chain[first].seqid != span[0].seqid or chain[first].name != span[0].name:
                raise ValueError(f"chain {chain.name}: cannot place its polymer in the chain")
            residues = counter + first + np.arange(n_span)
            anchor_name = "CA" if polymer_type in _PEPTIDE else "C4'"
            anchor = np.full(n_span, -1, dtype=np.int64)
            for p, r in enumerate(residues):
                atoms = np.arange(residue_start[r], residue_start[r + 1])
                hit = atoms[model.atom_name[atoms] == anchor_name]
                if len(hit):
                    anchor[p] = hit[0]
            if (anchor >= 0).sum() >= MIN_RESIDUES:
                chains.append(_Chain(chain.name, polymer_type, span, residues,
                                     [residue.name for residue in span], anchor))
        counter += len(chain)
    order = sorted(range(len(chains)), key=lambda c: -len(chains[c].residues))
    return [chains[c] for c in order]


def _triplets(names: list[str]) -> set[tuple[str, str, str]]:
    return {tuple(names[i:i + 3]) for i in range(len(names) - 2)}


def _aligned_pairs(first: _Chain, other: _Chain) -> np.ndarray:
    """(m, 2) polymer positions (first, other) of the residue pairs aligned by gemmi."""
    result = gemmi.align_sequence_to_polymer(first.names, other.span, other.polymer_type,
                                             gemmi.AlignmentScoring("b"))
    pairs = []
    i = j = 0
    # query = first ("I": only in first), target = other ("D": only in other)
    for count, op in re.findall(r"(\d+)([MID])", result.cigar_str()):
        count = int(count)
        if op == "M":
            pairs.extend((i + k, j + k) for k in range(count))
            i += count
            j += count
        elif op == "I":
            i += count
        else:
            j += count
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def _positions(xyz: np.ndarray) -> list[gemmi.Position]:
    return [gemmi.Position(*p) for p in xyz]


def _core_superposition(fixed: np.ndarray, moving: np.ndarray, n_core: int,
                        max_cycles: int = 10) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Operator (R, t) with ``moving ≈ R fixed + t`` fitted to the ``n_core`` best pairs
    (iterative trimming), and the r.m.s.d. over them."""
    core = np.arange(len(fixed))
    for _ in range(max_cycles):
        result = gemmi.superpose_positions(_positions(moving[core]), _positions(fixed[core]))
        rotation = np.array(result.transform.mat.tolist())
        translation = np.array(result.transform.vec.tolist())
        distance = np.linalg.norm(fixed @ rotation.T + translation - moving, axis=1)
        new_core = np.sort(np.argsort(distance, kind="stable")[:n_core])
        if np.array_equal(new_core, core):
            break
        core = new_core
    rmsd = float(np.sqrt(np.mean(distance[core] ** 2)))
    return rotation, translation, rmsd, len(core)


def _compare(model: Model, first: _Chain, other: _Chain, min_identity: float,
             max_rmsd: float, min_fraction: float) -> NcsCopy | None:
    """``other`` as a copy of ``first``, or None when it is not one."""
    if other.polymer_type != first.polymer_type:
        return None
    short, long = sorted((_triplets(first.names), _triplets(other.names)), key=len)
    if len(short) and len(short & long) < _MIN_SHARED_TRIPLETS * len(short):
        return None
    pairs = _aligned_pairs(first, other)
    if len(pairs) == 0:
        return None
    same = np.array([first.names[i] == other.names[j] for i, j in pairs])
    identity = float(same.mean())
    if identity < min_identity:
        return None
    with_anchor = pairs[(first.anchor[pairs[:, 0]] >= 0) & (other.anchor[pairs[:, 1]] >= 0)]
    shorter = min((first.anchor >= 0).sum(), (other.anchor >= 0).sum())
    n_core = max(MIN_RESIDUES, math.ceil(min_fraction * shorter))
    if len(with_anchor) < n_core:
        return None
    fixed = model.xyz[first.anchor[with_anchor[:, 0]]]
    moving = model.xyz[other.anchor[with_anchor[:, 1]]]
    rotation, translation, rmsd, n_core = _core_superposition(fixed, moving, n_core)
    if rmsd > max_rmsd:
        return None
    rmsd_all = float(np.sqrt(np.mean(np.sum(
        (fixed @ rotation.T + translation - moving) ** 2, axis=1))))
    residues = np.full(len(first.residues), -1, dtype=np.int64)
    residues[pairs[:, 0]] = other.residues[pairs[:, 1]]
    return NcsCopy(other.name, residues, rotation, translation, rmsd, rmsd_all, n_core,
                   len(pairs), identity)


def _group(model: Model, copies: list[NcsCopy]) -> NcsGroup:
    """Atom-to-atom correspondence of ``copies`` (residues matched, atoms by name)."""
    residue_start = np.searchsorted(model.residue_index, np.arange(model.n_residues + 1))
    column_of: dict[tuple[int, str], int] = {}
    entries = []  # (copy, column, atom)
    for c, copy in enumerate(copies):
        for slot in np.flatnonzero(copy.residues >= 0):
            r = copy.residues[slot]
            for atom in range(residue_start[r], residue_start[r + 1]):
                key = (int(slot), str(model.atom_name[atom]))
                column = column_of.setdefault(key, len(column_of))
                entries.append((c, column, atom))
    atoms = np.full((len(copies), len(column_of)), -1, dtype=np.int64)
    for c, column, atom in entries:
        if atoms[c, column] < 0:  # a duplicated atom name keeps its first atom
            atoms[c, column] = atom
    return NcsGroup(tuple(copies), tuple(column_of), atoms)


def find_ncs(model: Model, min_identity: float = MIN_IDENTITY, max_rmsd: float = MAX_RMSD,
             min_fraction: float = MIN_FRACTION) -> list[NcsGroup]:
    """NCS groups of ``model``: copies of (nearly) identical chains (module docstring).

    Parameters
    ----------
    model
        The model (its template structure gives the chains and polymers).
    min_identity
        Sequence identity over the aligned residues, 0..1.
    max_rmsd
        Largest Cα r.m.s.d. (Å) of the superposed core.
    min_fraction
        Fraction of the shorter chain's residues in the core, 0..1.

    Returns
    -------
    list of NcsGroup
        Groups with at least two copies, in the order of their first copies (longest
        chains first); empty when the model has no NCS.
    """
    chains = _polymer_chains(model)
    placed = np.zeros(len(chains), bool)
    groups = []
    for a, first in enumerate(chains):
        if placed[a]:
            continue
        placed[a] = True
        identity_operator = NcsCopy(first.name, first.residues.copy(), np.eye(3), np.zeros(3),
                                    0.0, 0.0, int((first.anchor >= 0).sum()),
                                    len(first.residues), 1.0)
        copies = [identity_operator]
        for b in range(a + 1, len(chains)):
            if placed[b]:
                continue
            copy = _compare(model, first, chains[b], min_identity, max_rmsd, min_fraction)
            if copy is not None:
                copies.append(copy)
                placed[b] = True
        if len(copies) > 1:
            groups.append(_group(model, copies))
    return groups


class NcsTorsions(NamedTuple):
    """Torsion NCS restraints in the CSR layout of :mod:`varref.engine.ncs_torsions`.

    ``atoms`` (M, 4) int64: the copies of restraint r are rows ``offsets[r]:offsets[r+1]``
    (one per copy, in group order); ``offsets`` (n+1,) int64; ``period`` (n,) int64, 1 or 2;
    ``group`` (n,) int64 index into the groups; ``n_candidates`` proper torsions of the
    model lying in one copy of a group; ``n_single`` of them found in no other copy.
    """

    atoms: np.ndarray
    offsets: np.ndarray
    period: np.ndarray
    group: np.ndarray
    n_candidates: int
    n_single: int


def ncs_torsions(model: Model, groups: list[NcsGroup],
                 restraints: Restraints | None = None) -> NcsTorsions:
    """The torsions shared by the copies of each NCS group (module docstring).

    Parameters
    ----------
    model
        The model the groups were found in.
    groups
        From :func:`find_ncs`.
    restraints
        The model's monomer-library restraints; built when not given.
    """
    empty = NcsTorsions(np.zeros((0, 4), np.int64), np.zeros(1, np.int64),
                        np.zeros(0, np.int64), np.zeros(0, np.int64), 0, 0)
    if not groups:
        return empty
    if restraints is None:
        restraints = build_restraints(model)
    rows = proper_torsions(model, restraints)
    atom_group = np.full(model.n_atoms, -1, dtype=np.int64)
    atom_copy = np.full(model.n_atoms, -1, dtype=np.int64)
    atom_column = np.full(model.n_atoms, -1, dtype=np.int64)
    for g, group in enumerate(groups):
        copy_index, column = np.nonzero(group.atoms >= 0)
        atoms = group.atoms[copy_index, column]
        atom_group[atoms], atom_copy[atoms], atom_column[atoms] = g, copy_index, column
    if len(rows) == 0:
        return empty
    g, c = atom_group[rows], atom_copy[rows]
    inside = np.all(g >= 0, axis=1) & np.all(g == g[:, :1], axis=1) & np.all(c == c[:, :1], axis=1)
    members: dict[tuple, list[tuple[int, int]]] = {}
    for r in np.flatnonzero(inside):
        row = rows[r]
        columns = tuple(int(x) for x in atom_column[row])
        if columns[::-1] < columns:  # one key whichever direction the torsion is written
            columns, row = columns[::-1], row[::-1]
        # side-chain atoms must sit in residues of the same name in every copy
        names = tuple("" if model.atom_name[a] in BACKBONE_ATOMS else str(model.residue_name[a])
                      for a in row)
        members.setdefault((int(g[r, 0]), columns, names), []).append((int(c[r, 0]), r))
    shared = sorted((sorted(found), key[0]) for key, found in members.items() if len(found) > 1)
    # restraint order: by group, then by the model row of the first copy's torsion
    shared.sort(key=lambda item: (item[1], item[0][0][1]))
    n_candidates = int(inside.sum())
    if not shared:
        return empty._replace(n_candidates=n_candidates, n_single=n_candidates)
    chosen = np.array([r for found, _ in shared for _, r in found], dtype=np.int64)
    counts = np.array([len(found) for found, _ in shared], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    period = _periods(model, rows[chosen[offsets[:-1]]])
    return NcsTorsions(
        atoms=np.ascontiguousarray(rows[chosen]),
        offsets=offsets,
        period=period,
        group=np.array([group for _, group in shared], dtype=np.int64),
        n_candidates=n_candidates,
        n_single=n_candidates - len(chosen),
    )
