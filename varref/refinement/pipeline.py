"""The refinement pipeline: K >= 1 coordinate sets of one topology, one map; a single model is K = 1.

Every command that refines goes through :func:`refine_coordinates` — ``varref refine``,
ensembles, series and pixel-scan trials — so every option behaves the same everywhere.

1. Terms: restraint terms from the registry (:mod:`varref.refinement.terms`), the
   atom-centred map term for the macro-cycles.
2. Weight: given, or searched (:mod:`varref.refinement.weight`) on problem 0 and shared by
   all problems: a coarse search (50 iterations per trial) before cycle 1 and the full
   search (100) after it, because a start far from the density strains the geometry in the
   short trials and gives a weight that is too low once the model sits in the density.
   The conformational priors (:data:`DEFERRED_TERMS`: Ramachandran, rotamer, NCS) are left
   out of the coarse search and of macro-cycle 1 (with one macro-cycle they are always on):
   from a start far from its density they would hold residues in the wrong basin — a
   perturbed residue whose φ/ψ lies in the allowed band is pulled to the nearest favoured
   edge, not through the allowed band to where the map wants it.
3. Optional rigid-body fit of every problem (:mod:`varref.refinement.rigid_body`).
   Rotamer fit (option ``rotamer_fit``): after macro-cycle 1, when the backbone sits in the
   density, outlier side chains are replaced by the library rotamer that fits the map best
   (:mod:`varref.refinement.rotamer_fit`) and the rotamer term is rebuilt on the result
   (with one macro-cycle: before it).
4. Macro-cycles: batched L-BFGS of ``w T_map + T_restraints``; every problem keeps its own
   L-BFGS history and convergence, so a problem's result does not depend on its batch mates.
   Hydrogens ride on their parents (option ``hydrogens``, :mod:`varref.refinement.riding`):
   the heavy atoms are the variables, and the hydrogens are placed from their parents'
   frames before every minimisation (macro-cycle, final-stage run).
5. B-factors (option ``adp``): isotropic B per atom or per residue against the density
   correlation (:mod:`varref.refinement.adp`), as Phenix refines ADPs in its last cycle.
6. Final stage (option ``final_cc``): a short minimisation with the density-correlation
   term; per problem, while the geometry leaves its targets the CC weight is halved (up to
   three times) and the run continued from the strained trial, and the stage is kept only
   if it raises CC_mask.
7. Metrics before and after (and per cycle when asked): CC_mask, CC_box, CC_volume,
   CC_peaks, bond and angle r.m.s.d. (per-cycle rows: CC_mask and CC_box only, except the
   row that ends the refinement).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

import numpy as np

from varref.engine.geometry_stats import geometry_statistics
from varref.engine.map_target import map_target_weights
from varref.engine.restraint_target import pack_restraints
from varref.maps import Map
from varref.model import Model
from varref.refinement.lbfgs import minimise_lbfgs
from varref.refinement.metrics import ALL_CORRELATIONS, LOGGED_CORRELATIONS, model_metrics
from varref.refinement.objective import Objective
from varref.refinement.options import RefineOptions
from varref.refinement.riding import riding_hydrogens
from varref.refinement.terms import FINAL, MACRO, TermSetup, build_data_terms, build_restraint_terms
from varref.refinement.weight import WeightSearchResult, search_weight
from varref.restraints import Restraints

log = logging.getLogger(__name__)

#: How often the final stage halves the CC weight before giving up.
FINAL_CC_HALVINGS = 3
#: Terms that join after macro-cycle 1 (when there is more than one): conformational priors
#: that pull towards the basin the model is in (nearest favoured φ/ψ, nearest rotamer, the
#: other copies' torsions), which only means the right basin once the map has carried the
#: start into its density.
DEFERRED_TERMS = ("ramachandran", "rotamer", "ncs")


@dataclass
class PipelineResult:
    """Refined coordinates (K, N, 3), the weight, and per-problem metrics."""

    xyz: np.ndarray
    weight: float
    weight_search: WeightSearchResult | None
    before: list[dict[str, float]]
    after: list[dict[str, float]]
    cycles: list[list[dict]] = field(default_factory=list)
    runtime_s: float = 0.0
    b_iso: np.ndarray | None = None  # (K, N) B-factors after refinement


def refine_coordinates(model: Model, density: Map, restraints: Restraints, starts: np.ndarray,
                       options: RefineOptions, record_cycles: bool = False) -> PipelineResult:
    """Refine K starting coordinate sets of ``model`` into a prepared map.

    Parameters
    ----------
    model
        Topology, identifiers, B-factors.
    density
        The map boxed, blurred and normalised (:meth:`varref.maps.Map.prepared`).
    restraints
        Restraints of ``model``.
    starts
        (K, N, 3) or (N, 3) starting coordinates.
    options
        See :class:`RefineOptions`.
    record_cycles
        Compute the metrics after every macro-cycle (cost: one model map per problem and
        cycle); otherwise only before and after.

    Returns
    -------
    PipelineResult
    """
    started = time.perf_counter()
    xyz = np.array(starts, dtype=np.float64, copy=True)
    if xyz.ndim == 2:
        xyz = xyz[np.newaxis]
    n_problems = len(xyz)

    b_iso = np.repeat(model.b_iso[np.newaxis], n_problems, axis=0)  # per problem, (K, N)

    def metrics(coordinates: np.ndarray, k: int = 0, light: bool = False,
                deviations: dict | None = None) -> dict[str, float]:
        with_b = model if np.array_equal(b_iso[k], model.b_iso) else replace(model, b_iso=b_iso[k])
        return model_metrics(with_b, coordinates, restraints, density, options.resolution,
                             which=LOGGED_CORRELATIONS if light else ALL_CORRELATIONS,
                             deviations=deviations)

    before = [metrics(x, k) for k, x in enumerate(xyz)]
    if n_problems == 1:
        b = before[0]
        log.info("start      cc_mask %.4f cc_box %.4f bond %.4f angle %.3f", b["cc_mask"],
                 b["cc_box"], b["bond_rmsd"], b["angle_rmsd"])
    # hydrogens ride on their parents (riding.py): not variables, and without the restraints
    # that only place them; they are placed again before every minimisation
    riding = riding_hydrogens(model, restraints, options)
    term_restraints = riding.restraints(restraints) if riding is not None else restraints
    if riding is not None:
        log.info("hydrogens  %d ride on their parents (%d in a local frame)", len(riding.hydrogen),
                 int(riding.framed.sum()))
    elif model.is_hydrogen.any():
        log.info("hydrogens  %d refined as atoms (restrained)", int(model.is_hydrogen.sum()))

    def placed(coordinates: np.ndarray) -> np.ndarray:
        return riding.place(coordinates) if riding is not None else coordinates

    # with one macro-cycle there is no converged backbone to wait for: fit first
    fit_after_cycle_1 = options.rotamer_fit and options.macro_cycles > 1
    if options.rotamer_fit and not fit_after_cycle_1:
        model, xyz = _fit_rotamers(model, xyz, density, restraints, options)
    packed = pack_restraints(term_restraints)
    setup = TermSetup(model, term_restraints, packed, density, options, xyz)
    restraint_terms = build_restraint_terms(setup)
    log.info("terms: %s", ", ".join(t.name for t in restraint_terms))
    # the conformational priors join after macro-cycle 1 (module docstring): a start far
    # from its basin is first carried there by the map under the covalent restraints
    deferred = DEFERRED_TERMS if options.macro_cycles > 1 else ()
    first_terms = [t for t in restraint_terms if t.name not in deferred]
    map_weights = map_target_weights(model.atomic_number, model.is_hydrogen)
    map_terms = build_data_terms(setup, MACRO)

    def searched(coordinates: np.ndarray, coarse: bool) -> WeightSearchResult:
        # the first search only has to start cycle 1 in the right decade
        extra = {"iterations": 50} if coarse else {}
        found = search_weight(model, restraints, first_terms if coarse else restraint_terms,
                              map_terms, coordinates,
                              seed=options.seed, bond_rmsd_target=options.bond_rmsd_target,
                              angle_rmsd_target=options.angle_rmsd_target,
                              usable=inside_map(density, coordinates),
                              riding=riding, **extra)
        log.info("weight     %.4g (searched on %d segments)", found.weight, len(found.segments))
        return found

    search = None
    if options.weight is None:
        search = searched(xyz[0], coarse=options.macro_cycles > 1)
        weight = search.weight
    else:
        weight = float(options.weight)
        log.info("weight     %.4g (given)", weight)

    if options.rigid_body:
        from varref.refinement.rigid_body import rigid_body_fit

        xyz = np.stack([rigid_body_fit(model, x, density, map_weights) for x in xyz])

    cycles: list[list[dict]] = [[] for _ in range(n_problems)]
    objective = Objective(map_terms + first_terms, np.full(n_problems, weight), xyz)
    members = np.arange(n_problems)
    for cycle in range(1, options.macro_cycles + 1):
        if riding is not None:  # hydrogens placed from their frames, then riding this cycle
            xyz = placed(xyz)
            objective = Objective(objective.terms, objective.weights, xyz, riding=riding)
        result = minimise_lbfgs(objective, objective.pack(xyz), max_iterations=options.iterations,
                                max_step=options.max_step)
        xyz = placed(objective.unpack(result.x, members))
        if record_cycles:
            for k in range(n_problems):
                # per-cycle rows are logged with the cheap correlations; the row that ends
                # the refinement gets all of them (below)
                row = metrics(xyz[k], k, light=True)
                row.update(cycle=cycle, iterations=int(result.iterations[k]), weight=weight)
                cycles[k].append(row)
            if n_problems == 1:
                m = cycles[0][-1]
                log.info("cycle %d/%d  cc_mask %.4f cc_box %.4f bond %.4f angle %.3f (%d iterations)",
                         cycle, options.macro_cycles, m["cc_mask"], m["cc_box"], m["bond_rmsd"],
                         m["angle_rmsd"], m["iterations"])
        if cycle == 1 and fit_after_cycle_1:
            # rotamers are fitted once the backbone has moved into the density (a fit on a
            # start 1 Å off picks wrong rotamers), and the rotamer term then restrains the
            # fitted rotamers of the current model instead of the start's
            fitted_model, xyz = _fit_rotamers(model.with_xyz(xyz[0]) if n_problems == 1 else model,
                                              xyz, density, restraints, options)
            restraint_terms = _rebuild_rotamer_term(restraint_terms, TermSetup(
                fitted_model, term_restraints, packed, density, options, xyz))
        elif cycle == 1 and n_problems == 1 and options.macro_cycles > 1:
            # a single refinement's rotamer basins are those of its model after cycle 1, not
            # of its start (a batch keeps the input model's: the same restraints for all)
            restraint_terms = _rebuild_rotamer_term(restraint_terms, TermSetup(
                model.with_xyz(xyz[0]), term_restraints, packed, density, options, xyz))
        if cycle == 1 and options.macro_cycles > 1:
            objective = Objective(map_terms + restraint_terms, objective.weights, xyz)
        if cycle == 1 and search is not None and options.macro_cycles > 1:
            search = searched(xyz[0], coarse=False)
            weight = search.weight
            objective.weights[:] = weight

    if options.adp:
        b_iso = _refine_b(model, xyz, density, restraints, options, b_iso,
                          cycles if record_cycles else None, metrics)
    after = [cycles[k][-1] if cycles[k] else metrics(xyz[k], k) for k in range(n_problems)]
    if options.final_cc:
        xyz, after = _final_stage(model, density, restraints, restraint_terms, xyz, after, weight,
                                  options, metrics, cycles if record_cycles else None, b_iso,
                                  riding)
    for k, row in enumerate(after):
        if not set(ALL_CORRELATIONS) <= set(row):  # a light per-cycle row ended it
            row.update(metrics(xyz[k], k))
    after = [{k: v for k, v in row.items() if k not in ("cycle", "iterations", "weight")}
             for row in after]
    return PipelineResult(xyz, weight, search, before, after, cycles,
                          time.perf_counter() - started, b_iso)


def inside_map(density: Map, xyz: np.ndarray, margin_voxels: float = 2.0) -> np.ndarray:
    """(N,) bool: atoms at least ``margin_voxels`` inside the map box (where the tricubic
    stencil has data), i.e. atoms the map can inform."""
    grid = density.fractional_index(xyz)
    upper = np.array(density.shape_xyz, dtype=np.float64) - 1.0 - margin_voxels
    return np.all((grid >= margin_voxels) & (grid <= upper), axis=-1)


def _rebuild_rotamer_term(terms: list, setup: TermSetup) -> list:
    """``terms`` with the rotamer term rebuilt on ``setup.model`` (its basins follow the
    fitted side chains); the other terms keep their state."""
    from varref.refinement.terms import rotamer

    kept = [term for term in terms if term.name != "rotamer"]
    rebuilt = rotamer.build(setup) if any(t.name == "rotamer" for t in terms) else None
    return kept + ([rebuilt] if rebuilt is not None else [])


def _fit_rotamers(model: Model, xyz: np.ndarray, density: Map, restraints: Restraints,
                  options: RefineOptions) -> tuple[Model, np.ndarray]:
    """Replace outlier side chains by the library rotamer that fits the map best (as Phenix
    does at cryo-EM resolutions), in the input model — whose rotamers the rotamer term
    restrains, so every problem gets the same restraints — and in every problem."""
    from varref.refinement.rotamer_fit import fit_rotamer_outliers

    fitted_model_xyz, report = fit_rotamer_outliers(model, model.xyz, density, restraints,
                                                    method=options.interpolation)
    log.info("rotamer fit: %d of %d outlier side chains changed%s%s", len(report.changed),
             len(report.residues), ": " if report.changed else "", ", ".join(report.changed))
    fitted = xyz.copy()
    for k in range(len(xyz)):
        if np.array_equal(xyz[k], model.xyz):  # the usual single refinement: already done
            fitted[k] = fitted_model_xyz
        else:
            fitted[k] = fit_rotamer_outliers(model, xyz[k], density, restraints,
                                             method=options.interpolation)[0]
    return model.with_xyz(fitted_model_xyz), fitted


def _refine_b(model, xyz, density, restraints, options, b_iso, cycles, metrics) -> np.ndarray:
    """Isotropic B of every problem at its refined coordinates (:mod:`varref.refinement.adp`),
    as Phenix refines ADPs in the last macro-cycle; the final stage then sees the new B."""
    from varref.refinement.adp import refine_adp

    refined, reports = b_iso.copy(), []
    for k in range(len(xyz)):
        refined[k], report = refine_adp(model, xyz[k], density, options.resolution, restraints,
                                        mode=options.adp_mode, iterations=options.adp_iterations,
                                        b_start=b_iso[k], seed=options.seed)
        # atoms outside the map have no density to inform their B: they keep theirs
        outside = ~inside_map(density, xyz[k])
        refined[k, outside] = b_iso[k, outside]
        reports.append(report)
    b_iso[:] = refined  # the metrics closure reads this array
    if cycles is not None:
        for k in range(len(xyz)):
            cycles[k].append(dict(metrics(xyz[k], k, light=True), cycle="adp",
                                  iterations=int(reports[k]["iterations"]), weight=float("nan")))
    if len(xyz) == 1:
        log.info("B factors  %s B, %.1f-%.1f Å² (mean %.1f); CC_mask %.4f -> %.4f", report["mode"],
                 report["b_min"], report["b_max"], report["b_mean"], report["cc_before"],
                 report["cc_after"])
    return refined


def _final_stage(model, density, restraints, restraint_terms, xyz, entry, weight, options,
                 metrics, cycles, b_iso=None, riding=None):
    """Density-correlation stage with a per-problem geometry guard (see module docstring)."""
    n_problems = len(xyz)
    setup = TermSetup(model, restraints, None, density, options, xyz, b_iso)
    data_terms = build_data_terms(setup, FINAL)
    bond_limit = np.array([max(options.bond_rmsd_target, e["bond_rmsd"]) for e in entry])
    angle_limit = np.array([max(options.angle_rmsd_target, e["angle_rmsd"]) for e in entry])
    scale = np.ones(n_problems)
    pending = np.arange(n_problems)
    polished = xyz.copy()
    found: dict[int, dict] = {}
    for _ in range(FINAL_CC_HALVINGS + 1):
        if riding is not None:
            polished = riding.place(polished)
        objective = Objective(data_terms + restraint_terms, weight * scale, polished, riding=riding)
        # problems already settled stay where they are: only ``pending`` ones are minimised
        result = minimise_lbfgs(_subset_objective(objective, pending),
                                objective.pack(polished[pending]),
                                max_iterations=options.final_cc_iterations, max_step=0.2)
        trial = objective.unpack(result.x, pending)
        if riding is not None:
            trial = riding.place(trial)
        still = []
        for i, k in enumerate(pending):
            # a strained trial is the next start: the lower weight relaxes its geometry
            # while it keeps most of its map fit (a restart from the cycle result would
            # throw that away — an all-or-nothing guard that flips on one ladder step)
            polished[k] = trial[i]
            deviations = geometry_statistics(trial[i], restraints)  # the map fit only if kept
            if (deviations["bonds"]["rmsd"] <= bond_limit[k]
                    and deviations["angles"]["rmsd"] <= angle_limit[k]):
                found[k] = metrics(trial[i], k, deviations=deviations)
            else:
                still.append(k)
        if not still:
            break
        scale[still] *= 0.5
        pending = np.array(still)
    out_xyz, out_after = xyz.copy(), list(entry)
    for k in range(n_problems):
        if k not in found:
            log.info("final CC   skipped: geometry strained even at 1/%d of the weight", 2 ** FINAL_CC_HALVINGS)
        elif found[k]["cc_mask"] <= entry[k]["cc_mask"]:
            log.info("final CC   skipped: CC_mask did not improve")
        else:
            out_xyz[k], out_after[k] = polished[k], found[k]
            if cycles is not None:
                cycles[k].append(dict(found[k], cycle="final-cc", iterations=options.final_cc_iterations,
                                      weight=float(weight * scale[k])))
            if n_problems == 1:
                m = found[k]
                log.info("final CC   cc_mask %.4f cc_box %.4f bond %.4f angle %.3f (CC weight scale %.3g)",
                         m["cc_mask"], m["cc_box"], m["bond_rmsd"], m["angle_rmsd"], scale[k])
    return out_xyz, out_after


def _subset_objective(objective: Objective, problems: np.ndarray):
    """The objective seen by a minimiser of ``problems`` only (its rows 0..k-1 map to them)."""
    def evaluate(x: np.ndarray, rows: np.ndarray):
        return objective(x, problems[rows])
    return evaluate


def find_weight(model: Model, density: Map, restraints: Restraints, xyz: np.ndarray,
                options: RefineOptions) -> WeightSearchResult:
    """The full weight search at coordinates ``xyz`` with the pipeline's terms — what
    ensembles, series and pixel scans run once, so that all their refinements share one
    weight."""
    riding = riding_hydrogens(model, restraints, options)
    term_restraints = riding.restraints(restraints) if riding is not None else restraints
    setup = TermSetup(model, term_restraints, pack_restraints(term_restraints), density, options,
                      np.asarray(xyz, dtype=np.float64)[np.newaxis])
    found = search_weight(model, restraints, build_restraint_terms(setup),
                          build_data_terms(setup, MACRO), setup.start[0], seed=options.seed,
                          bond_rmsd_target=options.bond_rmsd_target,
                          angle_rmsd_target=options.angle_rmsd_target,
                          usable=inside_map(density, setup.start[0]),
                          riding=riding)
    log.info("weight     %.4g (searched on %d segments)", found.weight, len(found.segments))
    return found
