"""Automatic data weight: the paper's segment scheme (Afonine et al. 2018, §2.2.3).

Chains are cut into consecutive segments of ~10 residues; up to ``n_segments`` of them are
drawn at random (seeded). Each segment is refined briefly — its atoms move, atoms within
5 Å of it stay fixed and keep their restraints and contacts — at every weight of a
log-spaced ladder (2 per decade). All the ladder's trials of one segment are minimised in one
numba call (:mod:`varref.engine.fused_lbfgs`: the same kernels, sums and L-BFGS as the
Python path, without its per-evaluation overhead, GIL released so segments overlap in
threads); terms without a fused form fall back to the batched Python minimiser.

Per segment the weight is where its bond or angle r.m.s. deviation (restraints among heavy
atoms) crosses its target (0.01 Å, 1.0°), interpolated (linear in log w) between the last
acceptable and the first unacceptable trial; where a short trial cannot reach a target even
at the smallest weight (a poor starting geometry), that target is raised to 1.1 × what the
smallest weight reached. The global weight is a robust mean of the segments' log w (Tukey's
biweight: segments far from the others count less, and from 4.685 scaled median absolute
deviations not at all), taken down by :data:`WEIGHT_MARGIN`. Every step is continuous in the
trials' r.m.s. deviations, so a start moved by the last digit of its coordinates gets nearly
the same weight (a per-segment rounding to a weight grid and a hard outlier cut made it jump
by a third; docs/methods-refinement.md). With one segment the weight is that segment's,
times the margin (never a silent constant, unlike cctbx's lower-half mean, which is empty
for a single chunk).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from varref.engine.angles import angle_values
from varref.engine.bonds import bond_lengths
from varref.engine.fused_lbfgs import GEOMETRY, MAP, TOPOUT_A, TOPOUT_B, empty_slots, minimise_fused
from varref.engine.parallel import map_threads
from varref.model import Model
from varref.refinement.lbfgs import minimise_lbfgs
from varref.refinement.objective import Objective
from varref.refinement.riding import RidingHydrogens
from varref.refinement.terms.base import DATA, Term
from varref.restraints.arrays import Restraints
from varref.restraints.subset import select_restraints

log = logging.getLogger(__name__)

#: Default trial weights: 2 per decade from 0.1 to 1000 (the crossing of the targets is
#: interpolated between them).
DEFAULT_LADDER = np.geomspace(0.1, 1000.0, 9)
#: The global weight is the segments' robust mean crossing times this margin, 10^(-1/8): the
#: mean effect of the earlier rule, which took each segment's crossing down to the grid
#: 10^(j/4) (half a step of 4 per decade, on average), so the weights keep their level
#: (taking the crossing itself, ~1.5× higher, cost validation on real maps).
WEIGHT_MARGIN = 10.0 ** (-1.0 / 8.0)
#: Tukey's biweight of the segments' log w: the tuning constant (in scaled MADs; 95 %
#: efficiency for normal data) and the smallest scale (one step of 4 per decade, so that
#: segments that agree closely do not make every other one an outlier).
BIWEIGHT_C = 4.685
BIWEIGHT_MIN_SCALE = np.log(10.0) / 4.0
#: Largest coordinate step of a trial's L-BFGS iteration (Å).
TRIAL_MAX_STEP = 0.5


@dataclass
class SegmentTrial:
    """Outcome of one segment: its residues, and bond/angle r.m.s.d. at each trial weight."""

    chain: str
    first_residue: int
    last_residue: int
    bond_rmsd: np.ndarray
    angle_rmsd: np.ndarray
    chosen_weight: float
    limited_by: str


@dataclass
class WeightSearchResult:
    """The global weight, the trials behind it, and what was discarded as an outlier."""

    weight: float
    ladder: np.ndarray
    segments: list[SegmentTrial] = field(default_factory=list)
    outliers: list[int] = field(default_factory=list)
    runtime_s: float = 0.0


def polymer_segments(model: Model, length: int = 10) -> list[np.ndarray]:
    """Consecutive runs of ``length`` residues per chain (waters and single residues excluded).

    Returns a list of residue-index arrays; the last segment of a chain may be shorter but
    keeps at least half the length (else it joins the previous one).
    """
    first_atom = np.unique(model.residue_index, return_index=True)[1]
    chains = model.chain_id[first_atom]
    polymer = ~model.is_water[first_atom]
    segments: list[np.ndarray] = []
    for chain in dict.fromkeys(chains.tolist()):
        residues = np.flatnonzero((chains == chain) & polymer)
        if len(residues) < 2:
            continue
        chunks = [residues[k:k + length] for k in range(0, len(residues), length)]
        if len(chunks) > 1 and len(chunks[-1]) < max(2, length // 2):
            short = chunks.pop()
            chunks[-1] = np.concatenate([chunks[-1], short])
        segments.extend(chunks)
    return segments


def search_weight(
    model: Model,
    restraints: Restraints,
    restraint_terms: list[Term],
    data_terms: list[Term],
    xyz: np.ndarray,
    seed: int = 0,
    n_segments: int = 10,
    segment_length: int = 10,
    bond_rmsd_target: float = 0.01,
    angle_rmsd_target: float = 1.0,
    ladder: np.ndarray = DEFAULT_LADDER,
    iterations: int = 100,
    environment_radius: float = 5.0,
    usable: np.ndarray | None = None,
    heavy_atoms_only: bool = True,
    riding: RidingHydrogens | None = None,
) -> WeightSearchResult:
    """Find the data weight ``w`` by short trial refinements of random segments.

    Parameters
    ----------
    model, restraints
        The model and its restraints (for the bond/angle statistics of the trials).
    restraint_terms, data_terms
        The terms of the refinement (:mod:`varref.refinement.terms`); each segment trial
        uses their restriction to the segment and its environment (``Term.subset``), so the
        weight is found with every restraint the refinement will use.
    xyz
        Current coordinates (N, 3).
    seed
        Seeds the choice of segments (results are reproducible).
    usable
        (N,) bool, atoms inside the map; segments with fewer than 90 % of their heavy atoms
        inside are not used (default: all segments).
    heavy_atoms_only
        Judge the trials by restraints among heavy atoms (default, MolProbity's definition of
        the r.m.s.d.); False includes restraints to hydrogens, as before.
    riding
        The refinement's riding hydrogens (:mod:`varref.refinement.riding`): in each trial the
        segment's hydrogens ride on their parents as in the refinement.

    Returns
    -------
    WeightSearchResult
    """
    started = time.perf_counter()
    ladder = np.asarray(ladder, dtype=np.float64)
    segments = polymer_segments(model, segment_length)
    if usable is not None and segments:
        # a segment outside the map (or at its edge) has no data to balance: every weight
        # looks acceptable there and would drag the global weight to the top of the ladder
        heavy = ~model.is_hydrogen
        inside = []
        for residues in segments:
            atoms = np.isin(model.residue_index, residues) & heavy
            if atoms.any() and usable[atoms].mean() >= 0.9:
                inside.append(residues)
        if not inside:
            raise ValueError("no polymer segment lies inside the map to search the weight on")
        segments = inside
    if not segments:
        raise ValueError("no polymer segment to search the weight on")
    rng = np.random.default_rng(seed)
    if len(segments) > n_segments:
        chosen = np.sort(rng.choice(len(segments), size=n_segments, replace=False))
        segments = [segments[k] for k in chosen]
    tree = cKDTree(xyz)
    result = WeightSearchResult(weight=float("nan"), ladder=ladder)

    def trial(residues):
        return _trial_segment(model, restraints, restraint_terms, data_terms, xyz, residues, tree,
                              ladder, iterations, environment_radius, bond_rmsd_target,
                              angle_rmsd_target, heavy_atoms_only, riding=riding)

    # segments are independent minimisations with their own terms (Term.subset): in threads
    # their kernels overlap (the Python between them does not)
    result.segments.extend(map_threads(trial, segments))

    log_weights = np.log([s.chosen_weight for s in result.segments])
    centre, counted = biweight_location(log_weights)
    result.outliers = np.flatnonzero(~counted).tolist()
    result.weight = float(np.exp(centre) * WEIGHT_MARGIN)
    result.runtime_s = time.perf_counter() - started
    log.info("weight search: w = %.3g from %d segments (%d outliers) in %.1f s", result.weight,
             len(result.segments), len(result.outliers), result.runtime_s)
    return result


def fused_arguments(terms: list[Term]) -> tuple[np.ndarray, list] | None:
    """``order`` and ``slots`` of :func:`~varref.engine.fused_lbfgs.minimise_fused` for
    ``terms`` (summed as :class:`~varref.refinement.objective.Objective` sums them: the data
    term, then the restraint terms in list order), or None when the fused path cannot
    evaluate them (a term without ``fused_slot``, not exactly one map term, no geometry,
    a kind twice)."""
    slots = empty_slots()
    data, restraint = [], []
    for term in terms:
        form = getattr(term, "fused_slot", None)
        if form is None:
            return None
        kind, arguments = form()
        if kind == TOPOUT_A and TOPOUT_A in restraint:  # rotamers and reference model
            kind = TOPOUT_B
        if kind in data or kind in restraint:
            return None
        (data if term.kind == DATA else restraint).append(kind)
        slots[kind] = arguments
    if data != [MAP] or GEOMETRY not in restraint:
        return None
    return np.array(data + restraint, dtype=np.int64), slots


def _trial_segment(model, restraints, restraint_terms, data_terms, xyz, residues, tree, ladder,
                   iterations, environment_radius, bond_target, angle_target,
                   heavy_atoms_only: bool = True, fused: bool = True,
                   riding: RidingHydrogens | None = None) -> SegmentTrial:
    segment_atoms = np.flatnonzero(np.isin(model.residue_index, residues))
    near = tree.query_ball_point(xyz[segment_atoms], environment_radius)
    sub_atoms = np.unique(np.concatenate([segment_atoms, *map(np.asarray, near)])).astype(np.int64)
    sub_restraints = select_restraints(restraints, sub_atoms)
    moving = np.isin(sub_atoms, segment_atoms)
    start = np.repeat(xyz[sub_atoms][np.newaxis], len(ladder), axis=0)
    sub_terms = [sub for term in data_terms + restraint_terms if (sub := term.subset(sub_atoms)) is not None]
    sub_riding = riding.subset(sub_atoms, xyz) if riding is not None else None
    arguments = fused_arguments(sub_terms) if fused else None
    if arguments is not None:
        refined, _ = minimise_fused(
            start, moving, ladder, *arguments, max_iterations=iterations, max_step=TRIAL_MAX_STEP,
            riding=None if sub_riding is None else (sub_riding.hydrogen, sub_riding.parent))
    else:
        target = Objective(sub_terms, ladder, start, moving=moving, riding=sub_riding)
        minimised = minimise_lbfgs(target, target.pack(start), max_iterations=iterations,
                                   max_step=TRIAL_MAX_STEP)
        refined = target.unpack(minimised.x, np.arange(len(ladder)))

    # geometry of the restraints that touch the moving atoms
    bonds, angles = sub_restraints.bonds, sub_restraints.angles
    # over heavy atoms, as every reported r.m.s.d. (MolProbity's definition): riding X-H
    # bonds stay ideal and would dilute the strain the map pull puts on the heavy atoms
    heavy = ~model.is_hydrogen[sub_atoms] if heavy_atoms_only else np.ones(len(sub_atoms), bool)
    bond_moves = moving[bonds.atoms].any(axis=1) & heavy[bonds.atoms].all(axis=1)
    angle_moves = moving[angles.atoms].any(axis=1) & heavy[angles.atoms].all(axis=1)
    bond_rmsd = np.array([np.sqrt(np.mean((bond_lengths(x, bonds.atoms[bond_moves])
                                           - bonds.ideal[bond_moves]) ** 2)) for x in refined])
    angle_rmsd = np.array([np.sqrt(np.mean((angle_values(x, angles.atoms[angle_moves])
                                            - angles.ideal[angle_moves]) ** 2)) for x in refined])
    # A short trial cannot always bring a poor start inside the targets even with almost no
    # map pull; the targets are then raised to what the restraints alone reached (the
    # smallest weight's result) plus a 10 % margin, so the search measures how much map
    # pull the geometry tolerates instead of collapsing to the smallest weight.
    bond_limit = max(bond_target, 1.1 * bond_rmsd[0])
    angle_limit = max(angle_target, 1.1 * angle_rmsd[0])
    acceptable = (bond_rmsd <= bond_limit) & (angle_rmsd <= angle_limit)
    weight = float(ladder[-1])
    if acceptable.all():
        limited_by = "top of ladder"
    elif acceptable.any():
        # the run of acceptable weights that starts at the bottom, ended where the r.m.s.d.
        # crosses its limit (linear in log w between the last acceptable and the first
        # unacceptable trial)
        index = int(np.argmin(acceptable)) - 1
        limited_by = "geometry targets"
        weight = _crossing(ladder, index, ((bond_rmsd, bond_limit), (angle_rmsd, angle_limit)))
    else:  # cannot happen: the smallest weight is acceptable by construction
        weight, limited_by = float(ladder[0]), "targets unreachable: smallest weight"
    first, last = residues[0], residues[-1]
    atom_first = np.flatnonzero(model.residue_index == first)[0]
    atom_last = np.flatnonzero(model.residue_index == last)[0]
    if limited_by != "geometry targets":
        log.warning("weight search: segment %s %d-%d: %s", model.chain_id[atom_first],
                    model.residue_number[atom_first], model.residue_number[atom_last], limited_by)
    return SegmentTrial(str(model.chain_id[atom_first]), int(model.residue_number[atom_first]),
                        int(model.residue_number[atom_last]), bond_rmsd, angle_rmsd,
                        weight, limited_by)


def biweight_location(values: np.ndarray, c: float = BIWEIGHT_C,
                      min_scale: float = BIWEIGHT_MIN_SCALE) -> tuple[float, np.ndarray]:
    """Tukey's biweight location of ``values`` (Mosteller & Tukey 1977) and which values count.

    Iterated from the median: ``T = Σ w_i x_i / Σ w_i`` with ``w_i = (1 - u_i²)²`` for
    ``|u_i| < 1``, else 0, ``u_i = (x_i - T) / (c s)`` and ``s`` the scaled median absolute
    deviation (1.4826 MAD, at least ``min_scale``). Unlike a mean after a hard outlier cut,
    T moves continuously with the values.

    Returns
    -------
    location : float
    counted : (n,) bool
        Values with a non-zero weight at the end (False: an outlier).
    """
    values = np.asarray(values, dtype=np.float64)
    centre = float(np.median(values))
    scale = max(1.4826 * float(np.median(np.abs(values - centre))), min_scale)
    weights = np.ones(len(values))
    for _ in range(100):
        u = (values - centre) / (c * scale)
        weights = np.where(np.abs(u) < 1.0, (1.0 - u * u) ** 2, 0.0)
        if not weights.sum() > 0.0:  # cannot happen from the median (u = 0 there); kept safe
            break
        moved = float(np.sum(weights * values) / np.sum(weights)) - centre
        centre += moved
        if abs(moved) < 1e-12:
            break
    return centre, weights > 0.0


def _crossing(ladder: np.ndarray, index: int, series) -> float:
    """Weight between ``ladder[index]`` and ``ladder[index + 1]`` where the first of the
    (r.m.s.d. per weight, limit) series reaches its limit, linear in log w."""
    low, high = np.log(ladder[index]), np.log(ladder[index + 1])
    fraction = 1.0
    for values, limit in series:
        a, b = values[index], values[index + 1]
        if b > limit and b > a:
            fraction = min(fraction, (limit - a) / (b - a))
    return float(np.exp(low + np.clip(fraction, 0.0, 1.0) * (high - low)))
