"""Secondary structure of a model and the hydrogen-bond restraints that keep it intact.

Three sources, in this order of trust:

* **File annotation**, used whenever the file has any: HELIX/SHEET records or mmCIF
  ``struct_conf``/``struct_sheet_range``, which gemmi keeps in ``Model.structure.helices``
  and ``.sheets``. A helix of class α (1), 3₁₀ (5) or π (3) from residue s to e gives the
  H-bonds O(i)···N(i+n), n = 4, 3, 5, for s ≤ i ≤ e − n (no proline donor); a sheet gives
  the backbone H-bonds (Kabsch–Sander energy below) between residues of different strands
  of the same sheet.
* **DSSP-like assignment** from the coordinates when the file has no annotation
  (Kabsch & Sander 1983): the electrostatic energy of a backbone C=O···H–N pair

      E = q1 q2 f (1/r_ON + 1/r_CH − 1/r_OH − 1/r_CN),   q1 = 0.42 e, q2 = 0.20 e,
      f = 332 Å kcal mol⁻¹ e⁻²,

  with an H-bond where E < −0.5 kcal/mol. Missing amide hydrogens are placed 1.0 Å from N
  opposite the previous residue's C=O (the DSSP convention). An n-turn at i is
  Hbond(O_i, N_{i+n}); two consecutive n-turns at i−1 and i make residues i..i+n−1 helix
  (α: H, n = 4; 3₁₀: G, n = 3; π: I, n = 5). Bridges between residues i and j
  (|i − j| ≥ 3) are parallel for [Hbond(i−1, j) and Hbond(j, i+1)] or
  [Hbond(j−1, i) and Hbond(i, j+1)], antiparallel for [Hbond(i, j) and Hbond(j, i)] or
  [Hbond(i−1, j+1) and Hbond(j−1, i+1)]; consecutive bridges form ladders, ladders joined
  by short bulges are linked, and residues of ladders (two or more bridges, or linked) are
  strand E, a lone bridge is B. Priority H > E/B > G > I. The restrained H-bonds are those
  that define an element: the turns inside each helix and the bridge H-bonds between E
  residues.
* **Nucleic-acid base pairs** found from the geometry: Watson–Crick G·C, A·U, A·T and G·U
  wobble pairs whose hydrogen-bonding atoms are within 3.4 Å, with base planes within 35°
  of parallel and the central H-bond within 35° of both planes. Each base pairs at most
  once (best pairs first). Stacking is *not* restrained.

Everything is returned as flat atom-index arrays (``Model.xyz`` rows); the engine restrains
them with :mod:`varref.engine.distance_topout`.

References
----------
Kabsch, W. & Sander, C. (1983). Biopolymers 22, 2577–2637.
Headd, J. J. et al. (2012). Acta Cryst. D68, 381–390.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from varref.model import Model

#: q1 q2 f of the Kabsch–Sander energy, kcal/mol·Å: 0.42 · 0.20 · 332.
KS_ENERGY_FACTOR = 0.42 * 0.20 * 332.0
#: H-bond when the Kabsch–Sander energy is below this (kcal/mol).
HBOND_ENERGY_CUTOFF = -0.5
#: DSSP's floor of the energy (atoms closer than 0.5 Å would diverge).
MIN_ENERGY = -9.9
#: Residue pairs with Cα further apart than this cannot H-bond (DSSP's 9 Å).
CA_CUTOFF = 9.0
#: N–H length used to place missing amide hydrogens (DSSP convention), Å.
NH_LENGTH = 1.0
#: C(i)–N(i+1) longer than this is a chain break, Å.
PEPTIDE_BREAK = 2.5

#: Defaults of the restraints (Phenix: N–O 2.9 Å, sigma 0.05 Å, N–O cut-off 3.5 Å).
IDEAL_N_O = 2.9
SIGMA = 0.05
#: Flat-bottom half-width (Å) of an H-bond restraint: no force within d0 ± SLACK. H-bonds of
#: deposited helices and sheets scatter around 2.9-3.1 Å with s.d. 0.14-0.22 Å (1ubq, 6OUT,
#: 3J6R, TRPV1); a restraint without slack forces every one to 2.9 Å (docs/methods-restraints.md).
SLACK = 0.15
#: Top-out limit, Å: Phenix's outlier cut-off minus the ideal, 3.5 − 2.9.
LIMIT = 0.6
#: Annotated H-bonds longer than this (N–O, Å) in the model are not restrained (Phenix).
DISTANCE_CUT_N_O = 3.5

#: Element codes of restrained distances; ``SecondaryStructure.kind`` indexes this tuple.
KINDS = ("alpha", "3_10", "pi", "sheet", "base_pair")
_HELIX_STEP = {"alpha": 4, "3_10": 3, "pi": 5}
_HELIX_CODE = {"alpha": "H", "3_10": "G", "pi": "I"}
_RECORD_CLASS = {"RAlpha": "alpha", "R310": "3_10", "RPi": "pi"}

#: Nucleic-acid base letter by residue name.
_BASE = {"A": "A", "DA": "A", "G": "G", "DG": "G", "C": "C", "DC": "C", "U": "U", "DU": "U",
         "T": "T", "DT": "T"}
_PURINE_RING = ("N9", "C8", "N7", "C5", "C6", "N1", "C2", "N3", "C4")
_PYRIMIDINE_RING = ("N1", "C2", "N3", "C4", "C5", "C6")
#: H-bonded atom pairs (purine atom, pyrimidine atom) per pair type; the first is central.
BASE_PAIR_HBONDS = {
    ("G", "C"): (("N1", "N3"), ("O6", "N4"), ("N2", "O2")),
    ("A", "U"): (("N1", "N3"), ("N6", "O4")),
    ("A", "T"): (("N1", "N3"), ("N6", "O4")),
    ("G", "U"): (("O6", "N3"), ("N1", "O2")),  # wobble
}
BASE_PAIR_HBOND_CUTOFF = 3.4
BASE_PAIR_PLANE_ANGLE = 35.0
BASE_PAIR_IDEAL = 2.9


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class HydrogenBonds:
    """Backbone H-bonds with E < −0.5 kcal/mol, in backbone-residue numbering.

    ``acceptor`` (C=O residue) and ``donor`` (N–H residue) index :class:`Backbone` rows;
    ``energy`` in kcal/mol.
    """

    acceptor: np.ndarray
    donor: np.ndarray
    energy: np.ndarray

    def as_set(self) -> set[tuple[int, int]]:
        return set(zip(self.acceptor.tolist(), self.donor.tolist()))


@dataclass(frozen=True)
class Backbone:
    """Amino-acid residues with a complete N, CA, C, O backbone, in file order.

    ``residue`` (m,) model residue index; ``n``, ``ca``, ``c``, ``o``, ``h`` (m,) atom
    indices (``h`` −1 when the model has no amide H); ``segment`` (m,) id of the unbroken
    stretch of chain the residue belongs to; ``proline`` (m,) bool.
    """

    residue: np.ndarray
    n: np.ndarray
    ca: np.ndarray
    c: np.ndarray
    o: np.ndarray
    h: np.ndarray
    segment: np.ndarray
    proline: np.ndarray

    def __len__(self) -> int:
        return len(self.residue)

    def connected(self, i: int, j: int) -> bool:
        """Rows i..j (i ≤ j) exist and form one unbroken stretch of chain."""
        return 0 <= i <= j < len(self.residue) and self.segment[i] == self.segment[j]


@dataclass(frozen=True)
class BasePair:
    """A Watson–Crick (``"WC"``) or G·U wobble (``"wobble"``) pair of model residues
    ``purine`` and ``pyrimidine`` with its H-bonded atom pairs (purine atom, pyrimidine atom)."""

    purine: int
    pyrimidine: int
    kind: str
    atoms: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class SecondaryStructure:
    """Secondary structure of a model and the distances to restrain.

    Attributes
    ----------
    source : {"records", "dssp", "none"}
        Where the protein annotation came from.
    codes : (n_residues,) str
        Per model residue: ``H`` α, ``G`` 3₁₀, ``I`` π helix, ``E`` strand, ``B`` isolated
        bridge (DSSP only), ``-`` otherwise (also every non-protein residue).
    atoms : (n, 2) int64
        Restrained atom pairs. Protein rows are (N of the donor residue, O of the acceptor
        residue); base-pair rows are (purine atom, pyrimidine atom).
    ideal : (n,) float64
        Target distance, Å.
    kind : (n,) int8
        Index into :data:`KINDS`.
    base_pairs : list of BasePair
    """

    source: str
    codes: np.ndarray
    atoms: np.ndarray
    ideal: np.ndarray
    kind: np.ndarray
    base_pairs: list[BasePair] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ideal)

    def counts(self) -> dict[str, int]:
        """Number of restrained distances per element type."""
        return {name: int(np.count_nonzero(self.kind == k)) for k, name in enumerate(KINDS)}


# --------------------------------------------------------------------------- backbone


def _first_atom_per_residue(model: Model, names: tuple[str, ...], mask=None) -> np.ndarray:
    """Per model residue, the index of its first atom called one of ``names`` (−1: none)."""
    out = np.full(model.n_residues, -1, dtype=np.int64)
    for name in reversed(names):  # earlier names win: written last
        hit = model.atom_name == name
        if mask is not None:
            hit &= mask
        idx = np.flatnonzero(hit)
        residues, first = np.unique(model.residue_index[idx], return_index=True)
        out[residues] = idx[first]
    return out


def backbone(model: Model) -> Backbone:
    """The protein backbone of ``model`` (residues with N, CA, C and O)."""
    heavy = ~model.is_hydrogen
    n = _first_atom_per_residue(model, ("N",), heavy)
    ca = _first_atom_per_residue(model, ("CA",), heavy)
    c = _first_atom_per_residue(model, ("C",), heavy)
    o = _first_atom_per_residue(model, ("O",), heavy)
    h = _first_atom_per_residue(model, ("H", "HN"), model.is_hydrogen)
    rows = np.flatnonzero((n >= 0) & (ca >= 0) & (c >= 0) & (o >= 0))
    first_atom = np.unique(model.residue_index, return_index=True)[1]
    chain = model.chain_id[first_atom][rows]
    name = model.residue_name[first_atom][rows]
    xyz = model.xyz
    # a new segment starts at a chain change or where C(k)–N(k+1) is not a peptide bond
    gap = np.linalg.norm(xyz[n[rows][1:]] - xyz[c[rows][:-1]], axis=1) if len(rows) > 1 \
        else np.zeros(0)
    new = np.ones(len(rows), dtype=bool)
    if len(rows) > 1:
        new[1:] = (chain[1:] != chain[:-1]) | (gap > PEPTIDE_BREAK)
    return Backbone(residue=rows, n=n[rows], ca=ca[rows], c=c[rows], o=o[rows], h=h[rows],
                    segment=np.cumsum(new) - 1, proline=np.isin(name, ("PRO", "DPR")))


def _amide_hydrogens(bb: Backbone, xyz: np.ndarray) -> np.ndarray:
    """H position per backbone row (NaN where none): the model's H, else DSSP's placement."""
    m = len(bb)
    h = np.full((m, 3), np.nan)
    has = bb.h >= 0
    h[has] = xyz[bb.h[has]]
    place = ~has & ~bb.proline
    place[0] = False
    if m > 1:
        place[1:] &= bb.segment[1:] == bb.segment[:-1]
    rows = np.flatnonzero(place)
    co = xyz[bb.c[rows - 1]] - xyz[bb.o[rows - 1]]
    co /= np.maximum(np.linalg.norm(co, axis=1), 1e-12)[:, None]
    h[rows] = xyz[bb.n[rows]] + NH_LENGTH * co
    h[bb.proline] = np.nan  # proline N has no hydrogen to donate
    return h


def hbond_energy(o, c, n, h) -> np.ndarray:
    """Kabsch–Sander energy (kcal/mol) of C=O···H–N for arrays of positions (k, 3).

    Distances below 0.5 Å give the floor −9.9, as in DSSP.
    """
    def dist(a, b):
        return np.linalg.norm(np.asarray(a) - np.asarray(b), axis=-1)

    r_on, r_ch, r_oh, r_cn = dist(o, n), dist(c, h), dist(o, h), dist(c, n)
    close = np.minimum(np.minimum(r_on, r_ch), np.minimum(r_oh, r_cn)) < 0.5
    with np.errstate(divide="ignore", invalid="ignore"):
        energy = KS_ENERGY_FACTOR * (1 / r_on + 1 / r_ch - 1 / r_oh - 1 / r_cn)
    energy = np.where(close, MIN_ENERGY, np.maximum(energy, MIN_ENERGY))
    return np.where(np.isnan(energy), 0.0, energy)


def backbone_hbonds(model: Model, bb: Backbone | None = None,
                    xyz: np.ndarray | None = None) -> HydrogenBonds:
    """Every backbone H-bond with Kabsch–Sander energy below −0.5 kcal/mol.

    Candidate pairs come from a k-d tree of Cα within 9 Å, so the cost is linear in the
    number of residues. The trivial O(i)···N(i+1) pair is excluded, as in DSSP.
    """
    bb = backbone(model) if bb is None else bb
    xyz = model.xyz if xyz is None else np.asarray(xyz, dtype=np.float64)
    empty = HydrogenBonds(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    if len(bb) < 2:
        return empty
    h = _amide_hydrogens(bb, xyz)
    pairs = cKDTree(xyz[bb.ca]).query_pairs(CA_CUTOFF, output_type="ndarray")
    if len(pairs) == 0:
        return empty
    acc = np.concatenate([pairs[:, 0], pairs[:, 1]])
    don = np.concatenate([pairs[:, 1], pairs[:, 0]])
    keep = (don != acc + 1) & np.isfinite(h[don, 0])
    acc, don = acc[keep], don[keep]
    energy = hbond_energy(xyz[bb.o[acc]], xyz[bb.c[acc]], xyz[bb.n[don]], h[don])
    hit = energy < HBOND_ENERGY_CUTOFF
    order = np.lexsort((don[hit], acc[hit]))
    return HydrogenBonds(acc[hit][order].astype(np.int64), don[hit][order].astype(np.int64),
                         energy[hit][order])


# --------------------------------------------------------------------------- DSSP


@dataclass(frozen=True)
class DsspAssignment:
    """DSSP-like assignment: ``codes`` per backbone row, the H-bond set, and the H-bonds
    that define each element as (acceptor row, donor row, kind name)."""

    codes: np.ndarray
    hbonds: HydrogenBonds
    element_hbonds: list[tuple[int, int, str]]


def _bridges(hb: set, bb: Backbone) -> dict[tuple[int, int], tuple[str, list]]:
    """Bridges (i < j) → (``"parallel"``/``"antiparallel"``, their H-bonds (acc, don))."""
    def ok(i, j):
        return (i, j) in hb

    candidates = set()
    for a, d in hb:
        for i, j in ((a + 1, d), (a, d), (a + 1, d - 1)):
            candidates.add((min(i, j), max(i, j)))
    found = {}
    for i, j in candidates:
        if j - i < 3 or not (bb.connected(i - 1, i + 1) and bb.connected(j - 1, j + 1)):
            continue
        for kind, patterns in (
            ("parallel", (((i - 1, j), (j, i + 1)), ((j - 1, i), (i, j + 1)))),
            ("antiparallel", (((i, j), (j, i)), ((i - 1, j + 1), (j - 1, i + 1)))),
        ):
            bonds = [b for pattern in patterns if ok(*pattern[0]) and ok(*pattern[1])
                     for b in pattern]
            if bonds:
                found[(i, j)] = (kind, bonds)
                break
    return found


def _ladders(bridges: dict) -> list[list[tuple[int, int]]]:
    """Group bridges into ladders: (i, j), (i+1, j±1) of the same type, in order of i."""
    ladders: list[list[tuple[int, int]]] = []
    expects: dict[tuple[str, int, int], int] = {}  # next bridge that would extend a ladder
    for i, j in sorted(bridges):
        kind = bridges[(i, j)][0]
        k = expects.pop((kind, i, j), None)
        if k is None:
            k = len(ladders)
            ladders.append([])
        ladders[k].append((i, j))
        expects[(kind, i + 1, j + (1 if kind == "parallel" else -1))] = k
    return ladders


def _linked(l1, l2, kind) -> bool:
    """DSSP's bulge rule: same-type ladders ``l1`` → ``l2`` are linked when the index gap
    is < 3 on one strand and < 6 on the other (at most 1 and 4 skipped residues)."""
    i1 = [b[0] for b in l1]
    j1 = [b[1] for b in l1]
    i2 = [b[0] for b in l2]
    j2 = [b[1] for b in l2]
    gap_i = min(i2) - max(i1)
    gap_j = min(j2) - max(j1) if kind == "parallel" else min(j1) - max(j2)
    if gap_i < 1 or gap_j < 0:
        return False
    return (gap_i < 3 and gap_j < 6) or (gap_i < 6 and gap_j < 3)


def assign_dssp(model: Model, xyz: np.ndarray | None = None) -> DsspAssignment:
    """DSSP-like secondary structure of the protein part of ``model`` (see module docs)."""
    bb = backbone(model)
    hbonds = backbone_hbonds(model, bb, xyz)
    hb = hbonds.as_set()
    m = len(bb)
    codes = np.full(m, "-", dtype="<U1")

    # sheets first: helices override them (H has the highest priority)
    bridges = _bridges(hb, bb)
    ladders = _ladders(bridges)
    kind_of = [bridges[ladder[0]][0] for ladder in ladders]
    strand = np.zeros(m, dtype=bool)
    linked = np.zeros(len(ladders), dtype=bool)
    spans = []
    # ladders are created in order of their first i, so only the next few can follow a
    # ladder within the 5-residue bulge reach: the scan stays linear in the ladder count
    for a in range(len(ladders)):
        end_i = max(b[0] for b in ladders[a])
        for b in range(a + 1, len(ladders)):
            if ladders[b][0][0] - end_i >= 6:
                break
            if kind_of[a] == kind_of[b] and _linked(ladders[a], ladders[b], kind_of[a]):
                linked[[a, b]] = True
                spans.append(ladders[a] + ladders[b])
    spans += [ladder for k, ladder in enumerate(ladders) if len(ladder) > 1 or linked[k]]
    for span in spans:
        for side in (0, 1):
            rows = [b[side] for b in span]
            strand[min(rows):max(rows) + 1] = True
    for i, j in bridges:
        for r in (i, j):
            if not strand[r]:
                codes[r] = "B"
    codes[strand] = "E"

    def turn(i, n):
        return bb.connected(i, i + n) and (i, i + n) in hb

    helix_rows: dict[str, np.ndarray] = {}
    for name in ("alpha", "3_10", "pi"):
        n = _HELIX_STEP[name]
        rows = np.zeros(m, dtype=bool)
        for i in range(1, m - n + 1):
            if turn(i - 1, n) and turn(i, n):
                span = slice(i, i + n)
                # H always wins; G and I only where nothing stronger was assigned
                if name == "alpha" or np.all(np.isin(codes[span], ("-", _HELIX_CODE[name]))):
                    codes[span] = _HELIX_CODE[name]
                    rows[span] = True
        helix_rows[name] = rows

    element_hbonds: list[tuple[int, int, str]] = []
    for name, n in _HELIX_STEP.items():
        code = _HELIX_CODE[name]
        for a, d in sorted(hb):
            if d - a == n and bb.connected(a, d) and np.all(codes[a + 1:d] == code):
                element_hbonds.append((a, d, name))
    seen = set()
    for (i, j), (_kind, bonds) in sorted(bridges.items()):
        if codes[i] == "E" and codes[j] == "E":
            for bond in bonds:
                if bond not in seen:
                    seen.add(bond)
                    element_hbonds.append((bond[0], bond[1], "sheet"))
    return DsspAssignment(codes=codes, hbonds=hbonds, element_hbonds=element_hbonds)


# --------------------------------------------------------------------------- file records


def _residue_lookup(model: Model, bb: Backbone) -> dict[tuple[str, int, str], int]:
    first_atom = np.unique(model.residue_index, return_index=True)[1]
    atom = first_atom[bb.residue]
    keys = zip(model.chain_id[atom].tolist(), model.residue_number[atom].tolist(),
               (s.strip() for s in model.insertion_code[atom].tolist()))
    lookup: dict[tuple[str, int, str], int] = {}
    for row, key in enumerate(keys):
        lookup.setdefault(key, row)
    return lookup


def _address_row(address, lookup) -> int | None:
    seqid = address.res_id.seqid
    return lookup.get((address.chain_name, int(seqid.num), seqid.icode.strip()))


def has_annotation(model: Model) -> bool:
    """Whether the file that ``model`` came from had HELIX/SHEET (struct_conf) records."""
    st = model.structure
    return len(st.helices) > 0 or len(st.sheets) > 0


def annotation_from_records(model: Model) -> DsspAssignment:
    """Helices and sheets of the file's annotation, as per-row codes and restrained H-bonds.

    Helix H-bonds follow the helix class (O(i)···N(i+n)) whatever the current geometry;
    sheet H-bonds are the Kabsch–Sander H-bonds between residues of different strands of
    one sheet (strands widened by one residue, since a bridge also bonds the neighbours).
    Records naming residues absent from the model are skipped.
    """
    bb = backbone(model)
    lookup = _residue_lookup(model, bb)
    m = len(bb)
    codes = np.full(m, "-", dtype="<U1")
    element_hbonds: list[tuple[int, int, str]] = []
    for helix in model.structure.helices:
        name = _RECORD_CLASS.get(helix.pdb_helix_class.name)
        start, end = _address_row(helix.start, lookup), _address_row(helix.end, lookup)
        if name is None or start is None or end is None or end < start \
                or helix.start.chain_name != helix.end.chain_name:
            continue
        n = _HELIX_STEP[name]
        codes[start:end + 1] = _HELIX_CODE[name]
        for a in range(start, end - n + 1):
            if bb.connected(a, a + n) and not bb.proline[a + n]:
                element_hbonds.append((a, a + n, name))

    hbonds = backbone_hbonds(model, bb)
    strand_of = np.full(m, -1, dtype=np.int64)  # strand id, widened by one residue
    sheet_of = np.full(m, -1, dtype=np.int64)
    strand_id = 0
    for s, sheet in enumerate(model.structure.sheets):
        for strand in sheet.strands:
            start, end = _address_row(strand.start, lookup), _address_row(strand.end, lookup)
            if start is None or end is None or end < start:
                continue
            codes[start:end + 1] = "E"
            lo, hi = max(start - 1, 0), min(end + 1, m - 1)
            free = strand_of[lo:hi + 1] < 0
            strand_of[lo:hi + 1][free] = strand_id
            sheet_of[lo:hi + 1][free] = s
            strand_id += 1
    for a, d in zip(hbonds.acceptor.tolist(), hbonds.donor.tolist()):
        if (strand_of[a] >= 0 and strand_of[d] >= 0 and strand_of[a] != strand_of[d]
                and sheet_of[a] == sheet_of[d] and abs(a - d) >= 3):
            element_hbonds.append((a, d, "sheet"))
    return DsspAssignment(codes=codes, hbonds=hbonds, element_hbonds=element_hbonds)


# --------------------------------------------------------------------------- base pairs


def _atoms_by_name(model: Model, residue: np.ndarray) -> list[dict[str, int]]:
    """For the given model residues, a name → atom index map (first atom of each name)."""
    wanted = np.isin(model.residue_index, residue)
    table: dict[int, dict[str, int]] = {int(r): {} for r in residue}
    for i in np.flatnonzero(wanted & ~model.is_hydrogen):
        table[int(model.residue_index[i])].setdefault(str(model.atom_name[i]), int(i))
    return [table[int(r)] for r in residue]


def _plane_normal(points: np.ndarray) -> np.ndarray:
    centred = points - points.mean(axis=0)
    return np.linalg.svd(centred, full_matrices=False)[2][-1]


def find_base_pairs(
    model: Model,
    xyz: np.ndarray | None = None,
    hbond_cutoff: float = BASE_PAIR_HBOND_CUTOFF,
    max_plane_angle: float = BASE_PAIR_PLANE_ANGLE,
) -> list[BasePair]:
    """Watson–Crick and G·U wobble base pairs from the geometry.

    A purine–pyrimidine pair of a listed type (:data:`BASE_PAIR_HBONDS`) qualifies when
    every one of its H-bonding atom pairs is present and within ``hbond_cutoff``, the base
    planes (least-squares through the ring atoms) are within ``max_plane_angle`` of
    parallel, and the central H-bond lies within ``max_plane_angle`` of both planes. Each
    residue pairs at most once: candidates are taken by increasing mean deviation of their
    H-bonds from 2.9 Å. Residues adjacent in sequence are never paired.
    """
    xyz = model.xyz if xyz is None else np.asarray(xyz, dtype=np.float64)
    first_atom = np.unique(model.residue_index, return_index=True)[1]
    names = model.residue_name[first_atom]
    letters = np.array([_BASE.get(str(n), "") for n in names])
    purines = np.flatnonzero(np.isin(letters, ("A", "G")))
    pyrimidines = np.flatnonzero(np.isin(letters, ("C", "U", "T")))
    if len(purines) == 0 or len(pyrimidines) == 0:
        return []
    pu_atoms = _atoms_by_name(model, purines)
    py_atoms = _atoms_by_name(model, pyrimidines)
    # anchor atoms near the pairing edge: purine N1, pyrimidine N3 (≤ ~4 Å in every pair type)
    pu_ok = [k for k, t in enumerate(pu_atoms) if "N1" in t]
    py_ok = [k for k, t in enumerate(py_atoms) if "N3" in t]
    if not pu_ok or not py_ok:
        return []
    tree_pu = cKDTree(xyz[[pu_atoms[k]["N1"] for k in pu_ok]])
    tree_py = cKDTree(xyz[[py_atoms[k]["N3"] for k in py_ok]])
    cos_max = np.cos(np.radians(max_plane_angle))
    sin_max = np.sin(np.radians(max_plane_angle))
    candidates = []
    for a, near in enumerate(tree_pu.query_ball_tree(tree_py, 4.5)):
        pu = pu_ok[a]
        r_pu = int(purines[pu])
        for b in near:
            py = py_ok[b]
            r_py = int(pyrimidines[py])
            if abs(r_pu - r_py) < 2 and model.chain_id[first_atom[r_pu]] == \
                    model.chain_id[first_atom[r_py]]:
                continue
            pair = (letters[r_pu], letters[r_py])
            if pair not in BASE_PAIR_HBONDS:
                continue
            t_pu, t_py = pu_atoms[pu], py_atoms[py]
            bonds = BASE_PAIR_HBONDS[pair]
            if not all(x in t_pu and y in t_py for x, y in bonds):
                continue
            atoms = tuple((t_pu[x], t_py[y]) for x, y in bonds)
            dist = np.array([np.linalg.norm(xyz[j] - xyz[i]) for i, j in atoms])
            if np.any(dist > hbond_cutoff):
                continue
            ring_pu = [t_pu[x] for x in _PURINE_RING if x in t_pu]
            ring_py = [t_py[x] for x in _PYRIMIDINE_RING if x in t_py]
            if len(ring_pu) < 6 or len(ring_py) < 5:
                continue
            n_pu, n_py = _plane_normal(xyz[ring_pu]), _plane_normal(xyz[ring_py])
            if abs(float(n_pu @ n_py)) < cos_max:
                continue
            central = xyz[atoms[0][1]] - xyz[atoms[0][0]]
            central /= max(np.linalg.norm(central), 1e-12)
            if abs(float(central @ n_pu)) > sin_max or abs(float(central @ n_py)) > sin_max:
                continue
            kind = "wobble" if pair == ("G", "U") else "WC"
            score = float(np.mean(np.abs(dist - BASE_PAIR_IDEAL)))
            candidates.append((score, r_pu, r_py, kind, atoms))
    taken: set[int] = set()
    result = []
    for _score, r_pu, r_py, kind, atoms in sorted(candidates, key=lambda c: c[:3]):
        if r_pu in taken or r_py in taken:
            continue
        taken.update((r_pu, r_py))
        result.append(BasePair(r_pu, r_py, kind, atoms))
    return sorted(result, key=lambda p: (min(p.purine, p.pyrimidine), max(p.purine, p.pyrimidine)))


# --------------------------------------------------------------------------- combined


def find_secondary_structure(
    model: Model,
    source: str = "auto",
    ideal_n_o: float = IDEAL_N_O,
    distance_cut_n_o: float | None = DISTANCE_CUT_N_O,
    base_pairs: bool = True,
) -> SecondaryStructure:
    """Helices, sheets and base pairs of ``model`` and the distances to restrain.

    Parameters
    ----------
    model : Model
    source : {"auto", "records", "dssp"}
        ``"auto"``: the file's HELIX/SHEET annotation when it has any, else the DSSP-like
        assignment.
    ideal_n_o : float
        Target N–O distance of backbone H-bonds, Å.
    distance_cut_n_o : float or None
        Backbone H-bonds longer than this in ``model`` are not restrained (Phenix's
        outlier filter, 3.5 Å); None keeps all.
    base_pairs : bool
        Also find and restrain nucleic-acid base pairs.

    Returns
    -------
    SecondaryStructure
    """
    if source not in ("auto", "records", "dssp"):
        raise ValueError(f"source must be 'auto', 'records' or 'dssp', not {source!r}")
    if source == "auto":
        source = "records" if has_annotation(model) else "dssp"
    bb = backbone(model)
    if len(bb) == 0:
        used, assignment = "none", None
    else:
        used = source
        assignment = annotation_from_records(model) if source == "records" else assign_dssp(model)
    codes = np.full(model.n_residues, "-", dtype="<U1")
    pairs: list[tuple[int, int]] = []
    ideal: list[float] = []
    kind: list[int] = []
    if assignment is not None:
        codes[bb.residue] = assignment.codes
        seen = set()
        for a, d, name in assignment.element_hbonds:
            donor_n, acceptor_o = int(bb.n[d]), int(bb.o[a])
            if (donor_n, acceptor_o) in seen:
                continue
            if distance_cut_n_o is not None and \
                    np.linalg.norm(model.xyz[donor_n] - model.xyz[acceptor_o]) > distance_cut_n_o:
                continue
            seen.add((donor_n, acceptor_o))
            pairs.append((donor_n, acceptor_o))
            ideal.append(ideal_n_o)
            kind.append(KINDS.index(name))
    found_pairs = find_base_pairs(model) if base_pairs else []
    for bp in found_pairs:
        for i, j in bp.atoms:
            pairs.append((i, j))
            ideal.append(BASE_PAIR_IDEAL)
            kind.append(KINDS.index("base_pair"))
    return SecondaryStructure(
        source=used,
        codes=codes,
        atoms=np.array(pairs, dtype=np.int64).reshape(-1, 2),
        ideal=np.array(ideal, dtype=np.float64),
        kind=np.array(kind, dtype=np.int8),
        base_pairs=found_pairs,
    )
