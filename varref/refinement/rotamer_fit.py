"""Rotamer fitting of side-chain outliers: a pipeline step before the macro-cycles.

At 3–4.5 Å the gradient of the map cannot carry a side chain from one rotamer to another
(the chis would have to pass through eclipsed, clashing or empty conformations), so
phenix.real_space_refine fits rotamer outliers by a discrete search first (``rotamers.fit``;
Afonine et al. 2018). Here, for each amino acid whose side chain is a rotamer outlier:

1. **Outlier**: by varref's validation (:mod:`varref.validation.rotamers`, MolProbity
   Top8000 grids, outlier < 0.3 %) when ``tables`` are given; for residue types whose grid
   is absent from them (Arg, Lys in the shared snapshot), and when no tables are given, a
   side chain in no rotamer's basin of the shipped library (every chi within max(3 esd,
   40°) of a central value, :mod:`varref.restraints.rotamers`). Proline (ring) and side
   chains bonded to atoms outside their residue (disulfides, links) are not fitted.
2. **Candidates**: every library rotamer of the residue type, built by setting chi1..chin to
   the central values: the atoms downstream of each chi bond j–k (reachable from k in the
   bond graph of ``restraints.bonds.atoms`` without crossing j) rotate rigidly about the
   bond, so bond lengths and angles are unchanged and hydrogens follow their parents. A
   symmetric last chi (Asp, Glu, Phe, Tyr) is set to whichever of c and c + 180° is nearer.
   Then each candidate's chis are adjusted by coordinate descent over offsets of 0, ±10,
   ±20, ±30° from the central values (two sweeps over chi1..chin): deposited side chains sit
   up to 20° off centre, which moves the far atoms of Lys or Arg by ~2 Å.
3. **Rejection**: a trial is rejected when one of its moved heavy atoms is closer than
   ``clash_distance`` (2.6 Å) to a heavy atom of another residue (waters ignored, as
   Phenix's ``ignore_water_when_move_sidechains``; a k-d tree of the current coordinates),
   or, when ``tables`` are given, when validation's grid calls it an outlier.
4. **Score**: ``S = Σ w_m ρ(x_m)`` over the moved heavy atoms (the engine's map target on
   that subset, tricubic by default, map weights w as the map term's: 1, hydrogens 0).
5. **Decision**: the best candidate replaces the current side chain when its mean density
   per moved atom is at least ``min_density`` (0.3) × ρ_ref and it beats the current score
   by at least ``min_gain`` (0.05) × ρ_ref per moved atom, ρ_ref being the median density at
   the model's backbone atoms (N, CA, C, O). Relative to ρ_ref the thresholds do not depend
   on the map's scale or box; they leave side chains without density alone.

Residues are visited in residue order and each accepted change is seen by the next
(clashes are tested against the updated coordinates). No randomness: the same inputs give
the same result. The function is pure (inputs are not modified).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from varref.engine.map_target import map_target_value_gradient_batched, map_target_weights
from varref.maps import Map
from varref.model import Model
from varref.restraints.arrays import Restraints
from varref.restraints.rotamers import (
    RotamerLibrary,
    chi_deltas,
    load_rotamer_library,
    side_chain_chis,
)
from varref.validation.residues import ResidueTable, dihedral_deg, dihedrals_of
from varref.validation.rotamers import (
    GRID_MISSING,
    OUTLIER_THRESHOLD,
    fold_symmetric,
    rotamer_analysis,
)
from varref.validation.tables import OUTLIER

log = logging.getLogger(__name__)

#: Heavy-atom distance (Å) below which a candidate clashes with another residue: the
#: shortest real contacts (N–O, O–O hydrogen bonds) are about 2.6 Å. On TRPV1 (3.4 Å) 2.6
#: left fewer outliers and clashes after refinement than 2.2 or 3.0 (docs).
CLASH_DISTANCE = 2.6
#: Bound on how far a side-chain atom can be from its CA after chi turns (Å; 7 bonds of
#: 1.6 Å is 11.2): the clash test looks for bumps within this plus the clash distance.
ENVIRONMENT_RADIUS = 12.0
#: Smallest mean density per moved atom of an accepted rotamer, × ρ_ref.
MIN_DENSITY = 0.3
#: Smallest score gain per moved atom of an accepted rotamer, × ρ_ref.
MIN_GAIN = 0.05
#: Offsets (degrees) from a rotamer's central value tried for each chi, and the number of
#: coordinate-descent sweeps over the chis: the centre alone misplaces the far atoms of a
#: long side chain by ~2 Å when its chis sit 20° off centre, as deposited ones often do.
SEARCH_OFFSETS = (0.0, -10.0, 10.0, -20.0, 20.0, -30.0, 30.0)
SEARCH_SWEEPS = 2
#: Residues never fitted (chis are ring torsions).
NOT_FITTED = ("PRO",)
BACKBONE = ("N", "CA", "C", "O")

CHANGED = "changed"
KEPT_BEST = "kept: the current side chain fits the map best"
KEPT_GAIN = "kept: no rotamer fits the map clearly better"
KEPT_WEAK = "kept: weak density"
KEPT_CLASH = "kept: every rotamer clashes (or is a grid outlier)"
SKIPPED_BONDED = "skipped: side chain bonded outside its residue"


@dataclass
class RotamerFitReport:
    """What :func:`fit_rotamer_outliers` did.

    Attributes
    ----------
    rule : str
        How outliers were found (``"Top8000 grids"``, ``"library basins"`` or both).
    reference_density : float
        ρ_ref, the median map value at backbone atoms.
    residues : list of dict
        One per outlier considered: ``residue`` (index), ``label``, ``before`` (nearest
        rotamer), ``after`` (chosen rotamer or None), ``status``, ``score_before``,
        ``score_after`` (Σ w ρ over the moved heavy atoms), ``n_atoms`` (moved heavy
        atoms), ``n_rejected`` (candidates that clash or that the grid calls outliers).
    """

    rule: str
    reference_density: float
    residues: list[dict] = field(default_factory=list)

    @property
    def changed(self) -> list[str]:
        """Labels (``"A/LEU 43"``) of the residues whose side chain was replaced."""
        return [row["label"] for row in self.residues if row["status"] == CHANGED]

    @property
    def changed_residues(self) -> np.ndarray:
        """Residue indices of the changed side chains."""
        return np.array([row["residue"] for row in self.residues if row["status"] == CHANGED],
                        dtype=np.int64)


def bond_neighbours(n_atoms: int, bonds: np.ndarray) -> list[list[int]]:
    """Adjacency lists of the bond graph, neighbours sorted (deterministic traversal)."""
    neighbours: list[list[int]] = [[] for _ in range(n_atoms)]
    for i, j in np.asarray(bonds, dtype=np.int64).reshape(-1, 2):
        neighbours[i].append(int(j))
        neighbours[j].append(int(i))
    return [sorted(set(n)) for n in neighbours]


def downstream_atoms(neighbours: list[list[int]], j: int, k: int) -> np.ndarray | None:
    """Atoms reachable from ``k`` without crossing the bond j–k, sorted; None when ``j`` is
    reachable that way (the bond is in a ring and cannot be rotated)."""
    seen = {k}
    stack = [k]
    while stack:
        a = stack.pop()
        for b in neighbours[a]:
            if a == k and b == j:
                continue
            if b == j:
                return None
            if b not in seen:
                seen.add(b)
                stack.append(b)
    return np.array(sorted(seen), dtype=np.int64)


def set_chis(xyz: np.ndarray, quadruples: np.ndarray, moving: list[np.ndarray],
             targets: np.ndarray, period: np.ndarray) -> np.ndarray:
    """Coordinates with chi i of ``quadruples`` set to ``targets[i]`` (modulo 360/period),
    by rotating ``moving[i]`` about the chi bond. Returns a modified copy."""
    out = np.array(xyz, dtype=np.float64, copy=True)
    for q, atoms, target, p in zip(quadruples, moving, targets, period):
        current = dihedrals_of(out, q[np.newaxis])[0]
        turn = chi_deltas(target, current, p)  # the shortest turn to an equivalent target
        out = _turned(out[np.newaxis], q, atoms, np.reshape(turn, (1, 1)))[0, 0]
    return out


def rotamer_outliers(model: Model, xyz: np.ndarray, tables: dict | None = None,
                     library: RotamerLibrary | None = None) -> tuple[np.ndarray, str]:
    """Residue indices whose side chain is a rotamer outlier at ``xyz``, and the rule used
    (module docstring, step 1)."""
    library = load_rotamer_library() if library is None else library
    chis = side_chain_chis(model, xyz, library)
    by_library = {int(r) for r, inside in zip(chis.residue, chis.in_basin) if not inside}
    if tables is None:
        return np.array(sorted(by_library), dtype=np.int64), "library basins"
    analysis = rotamer_analysis(ResidueTable(model.with_xyz(xyz)), tables)
    outliers = set()
    grid_missing = False
    for row in analysis["residues"]:
        if row["status"] == OUTLIER:
            outliers.add(int(row["residue"]))
        elif row["status"] == GRID_MISSING:
            grid_missing = True
            if int(row["residue"]) in by_library:
                outliers.add(int(row["residue"]))
    rule = ("Top8000 grids; library basins where the grid is missing" if grid_missing
            else "Top8000 grids")
    return np.array(sorted(outliers), dtype=np.int64), rule


def fit_rotamer_outliers(model: Model, xyz: np.ndarray, density: Map, restraints: Restraints,
                         map_weights: np.ndarray | None = None, *, tables: dict | None = None,
                         library: RotamerLibrary | None = None,
                         clash_distance: float = CLASH_DISTANCE, min_density: float = MIN_DENSITY,
                         min_gain: float = MIN_GAIN, method: str = "tricubic",
                         ) -> tuple[np.ndarray, RotamerFitReport]:
    """Replace outlier side chains by the library rotamer that fits the map best.

    Parameters
    ----------
    model
        Topology and names.
    xyz
        (N, 3) coordinates to fit (e.g. one problem's start); not modified.
    density
        The map, as refinement reads it (:meth:`varref.maps.Map.prepared`).
    restraints
        The model's restraints; only the bond list is used.
    map_weights
        (N,) per-atom map weights (default :func:`map_target_weights`: 1, hydrogens 0).
    tables
        Top8000 rotamer grids (:func:`varref.validation.rotamers.load_rotamer_tables`) to
        find outliers as validation does; None uses the library basins.
    library
        Default: the shipped rotamer library.
    clash_distance, min_density, min_gain
        See the module docstring.
    method
        Map interpolation, ``"tricubic"`` or ``"trilinear"``.

    Returns
    -------
    xyz_new : (N, 3) float64
    report : RotamerFitReport
    """
    library = load_rotamer_library() if library is None else library
    xyz = np.array(xyz, dtype=np.float64, copy=True)
    if xyz.shape != (model.n_atoms, 3):
        raise ValueError(f"xyz has shape {xyz.shape}, the model has {model.n_atoms} atoms")
    if map_weights is None:
        map_weights = map_target_weights(model.atomic_number, model.is_hydrogen)
    map_weights = np.asarray(map_weights, dtype=np.float64)
    heavy = ~model.is_hydrogen & (map_weights > 0)
    outliers, rule = rotamer_outliers(model, xyz, tables, library)
    reference = _reference_density(model, xyz, density, method)
    report = RotamerFitReport(rule, reference)
    if len(outliers) == 0:
        return xyz, report
    neighbours = bond_neighbours(model.n_atoms, restraints.bonds.atoms)
    residues = ResidueTable(model.with_xyz(xyz))
    chis = side_chain_chis(model, xyz, library, residues)
    row_of = {int(r): i for i, r in enumerate(chis.residue)}
    bumpers = np.flatnonzero(~model.is_hydrogen & ~model.is_water)
    tree: cKDTree | None = None
    for residue in outliers:
        row = row_of.get(int(residue))
        if row is None:  # pragma: no cover - validation and chis use the same atoms
            continue
        resname = str(chis.resname[row])
        rotamers = library.get(resname)
        if resname in NOT_FITTED or rotamers is None:
            continue
        entry = {"residue": int(residue), "label": str(residues.label[residue]),
                 "before": str(chis.rotamer_name[row]), "after": None, "score_before": None,
                 "score_after": None, "n_atoms": 0, "n_rejected": 0}
        report.residues.append(entry)
        own = np.flatnonzero(model.residue_index == residue)
        quadruples = chis.atoms[row, :int(chis.n_chi[row])]
        moving = [downstream_atoms(neighbours, int(q[1]), int(q[2])) for q in quadruples]
        if any(m is None or not np.all(np.isin(m, own)) for m in moving):
            entry["status"] = SKIPPED_BONDED
            continue
        if tree is None:
            tree = cKDTree(xyz[bumpers])
        grid = tables.get(resname) if tables is not None else None
        side_chain = _SideChain(own, quadruples, moving, heavy, map_weights, rotamers,
                                density, method, tree, bumpers, clash_distance,
                                xyz[int(quadruples[0][1])], grid)
        current = side_chain.score(xyz[own][np.newaxis])[0]
        local, score, rejected = side_chain.fit(xyz[own])
        n = max(len(side_chain.scored), 1)
        entry.update(n_atoms=len(side_chain.scored), n_rejected=int(rejected.sum()),
                     score_before=float(current))
        allowed = np.flatnonzero(~rejected)
        if len(allowed) == 0:
            entry["status"] = KEPT_CLASH
            continue
        best = int(allowed[np.argmax(score[allowed])])  # first of equals: the more frequent
        entry["score_after"] = float(score[best])
        if score[best] <= current:
            entry["status"] = KEPT_BEST
        elif not reference > 0 or score[best] / n < min_density * reference:
            entry["status"] = KEPT_WEAK
        elif (score[best] - current) / n < min_gain * reference:
            entry["status"] = KEPT_GAIN
        else:
            entry["status"] = CHANGED
            entry["after"] = rotamers.names[best]
            xyz[own] = local[best]
            tree = None  # the next residue's clash test sees this side chain where it is now
    for entry in report.residues:
        log.debug("rotamer fit %-12s %-8s -> %-8s %s", entry["label"], entry["before"],
                 entry["after"] or "", entry["status"])
    return xyz, report


class _SideChain:
    """One residue's rotamer candidates in local coordinates (its own atoms only)."""

    def __init__(self, own, quadruples, moving, heavy, map_weights, rotamers, density, method,
                 tree, bumpers, clash_distance, anchor, grid=None):
        local_index = {int(a): i for i, a in enumerate(own)}
        self.quadruples = np.vectorize(local_index.get)(quadruples).astype(np.int64)
        self.moving = [np.array([local_index[int(a)] for a in m], dtype=np.int64)
                       for m in moving]
        # chi1 moves every side-chain atom beyond CB: those are scored and clash-tested
        self.scored = self.moving[0][heavy[own[self.moving[0]]]]
        self.weights = np.ascontiguousarray(map_weights[own[self.scored]])
        self.own = own
        self.rotamers = rotamers
        self.density = density
        self.method = method
        self.clash_distance = clash_distance
        self.grid = grid
        # The heavy atoms of other residues a candidate can reach: turning about chi bonds
        # keeps each side-chain atom within its bond path from CA (the chi1 bond's first
        # atom, ``anchor``; at most 7 bonds of <= 1.6 Å in any library residue), so a sphere
        # of ENVIRONMENT_RADIUS + the clash distance around CA holds every possible bump. A
        # small tree of those atoms answers "any neighbour within the clash distance" with
        # one query per point (the whole model's tree had to be asked past the own atoms).
        nearby = np.asarray(tree.query_ball_point(anchor, ENVIRONMENT_RADIUS + clash_distance),
                            dtype=np.int64)
        nearby = nearby[~np.isin(bumpers[nearby], own)]
        self.environment = cKDTree(tree.data[nearby]) if len(nearby) else None

    def score(self, local: np.ndarray) -> np.ndarray:
        """Σ w ρ over the scored atoms of each coordinate set (k, n_own, 3)."""
        d = self.density
        value, _ = map_target_value_gradient_batched(
            d.data, d.origin, d.voxel_size, np.ascontiguousarray(local[:, self.scored]),
            self.weights, self.method)
        return -value  # the map target is −Σ w ρ

    def clashes(self, local: np.ndarray) -> np.ndarray:
        """(k,) whether a scored atom of each coordinate set is within the clash distance of
        a heavy atom of another residue."""
        if self.environment is None:
            return np.zeros(len(local), dtype=bool)
        points = local[:, self.scored].reshape(-1, 3)
        distance, _ = self.environment.query(points, k=1, distance_upper_bound=self.clash_distance)
        return np.isfinite(distance).reshape(len(local), -1).any(axis=1)

    def rejected(self, local: np.ndarray) -> np.ndarray:
        """(k,) coordinate sets that clash, or that validation's grid (when given) calls a
        rotamer outlier: a fit must not trade one outlier for another."""
        bad = self.clashes(local)
        if self.grid is not None:
            q = self.quadruples[:self.grid.n_dim]
            chis = np.stack([dihedral_deg(*(local[:, quad[j]] for j in range(4))) for quad in q],
                            axis=-1)
            folded = np.stack([fold_symmetric(self.rotamers.resname, c) for c in chis])
            bad |= self.grid.value_at(folded) < OUTLIER_THRESHOLD
        return bad

    def fit(self, start: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every rotamer built at its central values, then each chi searched over
        SEARCH_OFFSETS around the centre (coordinate descent, SEARCH_SWEEPS sweeps; trials
        that clash are not taken). Returns coordinates (R, n_own, 3), scores (R,) and clash
        flags (R,)."""
        rotamers = self.rotamers
        n_rot = len(rotamers)
        local = np.repeat(start[np.newaxis], n_rot, axis=0)
        for i, (q, atoms) in enumerate(zip(self.quadruples, self.moving)):
            current = dihedral_deg(*(local[:, q[j]] for j in range(4)))
            # shortest turn to the centre (or its 180° twin for a symmetric chi)
            turn = chi_deltas(rotamers.chi[:, i], current, rotamers.period[i])
            local = _turned(local, q, atoms, turn[:, np.newaxis])[:, 0]
        offset = np.zeros(rotamers.chi.shape)
        offsets = np.asarray(SEARCH_OFFSETS, dtype=np.float64)
        n_off = len(offsets)
        for _ in range(SEARCH_SWEEPS):
            for i, (q, atoms) in enumerate(zip(self.quadruples, self.moving)):
                # all (rotamer, offset) trials of chi i in one batch
                trial = _turned(local, q, atoms, offsets[np.newaxis, :] - offset[:, i, np.newaxis])
                flat = trial.reshape(n_rot * n_off, *local.shape[1:])
                score = self.score(flat).reshape(n_rot, n_off)
                score[self.rejected(flat).reshape(n_rot, n_off)] = -np.inf
                choice = np.argmax(score, axis=1)  # first of equals: the smaller offset
                moved = np.isfinite(score[np.arange(n_rot), choice])
                local[moved] = trial[np.flatnonzero(moved), choice[moved]]
                offset[moved, i] = offsets[choice[moved]]
        return local, self.score(local), self.rejected(local)


def _turned(local: np.ndarray, quadruple: np.ndarray, atoms: np.ndarray,
            angle_deg: np.ndarray) -> np.ndarray:
    """Copies (R, n, n_own, 3) of ``local`` (R, n_own, 3) with ``atoms`` turned about the
    chi bond j→k of ``quadruple`` by ``angle_deg`` (R, n); a right-handed turn of the far
    atoms increases the dihedral (IUPAC)."""
    origin = local[:, quadruple[2]]
    axis = origin - local[:, quadruple[1]]
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    rotation = _rotation_matrices(axis, angle_deg)  # (R, n, 3, 3)
    out = np.repeat(local[:, np.newaxis], angle_deg.shape[1], axis=1)
    relative = local[:, atoms] - origin[:, np.newaxis]  # (R, m, 3)
    out[:, :, atoms] = (np.einsum("rmj,roij->romi", relative, rotation)
                        + origin[:, np.newaxis, np.newaxis])
    return out


def _rotation_matrices(axis: np.ndarray, angle_deg: np.ndarray) -> np.ndarray:
    """Rodrigues matrices (R, n, 3, 3) for unit axes (R, 3) and angles (R, n), degrees."""
    t = np.radians(angle_deg)[..., np.newaxis, np.newaxis]
    x, y, z = axis[:, 0], axis[:, 1], axis[:, 2]
    zero = np.zeros_like(x)
    k = np.stack([np.stack([zero, -z, y], -1), np.stack([z, zero, -x], -1),
                  np.stack([-y, x, zero], -1)], -2)[:, np.newaxis]  # (R, 1, 3, 3)
    return np.eye(3) + np.sin(t) * k + (1.0 - np.cos(t)) * (k @ k)


def _reference_density(model: Model, xyz: np.ndarray, density: Map, method: str) -> float:
    """Median map value at the backbone atoms N, CA, C, O (all heavy atoms if none)."""
    atoms = np.flatnonzero(np.isin(model.atom_name, BACKBONE) & ~model.is_hydrogen)
    if len(atoms) == 0:
        atoms = np.flatnonzero(~model.is_hydrogen)
    # each atom as its own one-atom "problem": the batched kernel returns −ρ per atom
    value, _ = map_target_value_gradient_batched(
        density.data, density.origin, density.voxel_size,
        np.ascontiguousarray(xyz[atoms][:, np.newaxis]), np.ones(1), method)
    return float(np.median(-value))
