"""Single-model real-space refinement (``varref refine``), following Afonine et al. 2018.

1. Preprocess: box the map around the model (margin ≥ 5 Å), optionally sharpen/blur it by
   ``map_b`` (Fourier-space exp(-B s²/4)), normalise to zero mean and unit r.m.s.
2. Weight: the segment search of :mod:`varref.refine.weight` unless a weight is given;
   a coarse search (9 weights, 50 iterations) starts cycle 1 and the full search runs
   after the first macro-cycle, because a start far from the density
   (e.g. a 1 Å perturbation) strains the geometry in the short trials and gives a weight
   that is too low once the model sits in the density.
3. Optional rigid-body fit (:mod:`varref.refine.rigid_body`).
4. Macro-cycles: L-BFGS minimisation of ``w T_map + T_restraints`` over all atoms;
   hydrogens carry no map weight and follow their restraints.
5. Final polishing (default on): a short minimisation with the density-correlation target
   (:mod:`varref.refine.cc_polish`), which accounts for overlapping atoms.
6. Metrics before and after every cycle: CC_mask, CC_box, bond and angle r.m.s.d.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from varref.engine.map_target import map_target_weights
from varref.engine.restraint_target import pack_restraints
from varref.mapfit import correlations
from varref.maps import Map
from varref.model import Model
from varref.refine.lbfgs import minimise_lbfgs
from varref.refine.target import RefinementTarget
from varref.refine.weight import WeightSearchResult, search_weight
from varref.restraints import Restraints, build_restraints
from varref.restraints.deviations import deviation_summary

log = logging.getLogger(__name__)

#: Trial weights of the first, coarse weight search: 2 per decade from 0.1 to 1000.
COARSE_LADDER = np.geomspace(0.1, 1000.0, 9)


@dataclass
class RefineOptions:
    """Parameters of :func:`refine`; defaults follow phenix.real_space_refine."""

    resolution: float
    macro_cycles: int = 5
    iterations: int = 100
    weight: float | None = None
    rigid_body: bool = False
    seed: int = 0
    map_b: float | None = None
    box_margin: float = 5.0
    bond_rmsd_target: float = 0.01
    angle_rmsd_target: float = 1.0
    interpolation: str = "tricubic"
    max_step: float = 0.5
    final_cc: bool = True
    final_cc_iterations: int = 30


@dataclass
class RefinementResult:
    """Refined coordinates, the weight used, and metrics per stage."""

    xyz: np.ndarray
    weight: float
    weight_search: WeightSearchResult | None
    before: dict[str, float]
    after: dict[str, float]
    cycles: list[dict[str, float]] = field(default_factory=list)
    runtime_s: float = 0.0


def prepare_map(density: Map, xyz: np.ndarray, margin: float, map_b: float | None) -> Map:
    """Box around the model, optionally apply B (positive blurs, negative sharpens), normalise."""
    density.require_orthogonal()
    boxed = density.box_around(xyz, margin=max(margin, 5.0))
    if map_b:
        boxed = apply_b_factor(boxed, map_b)
    return boxed.normalised()


def apply_b_factor(density: Map, b: float) -> Map:
    """Multiply the map's Fourier coefficients by exp(-b s²/4) (s = 1/d)."""
    from dataclasses import replace

    data = density.data.astype(np.float64)
    transform = np.fft.rfftn(data)
    nz, ny, nx = data.shape
    fz = np.fft.fftfreq(nz, d=density.voxel_size[2])[:, None, None]
    fy = np.fft.fftfreq(ny, d=density.voxel_size[1])[None, :, None]
    fx = np.fft.rfftfreq(nx, d=density.voxel_size[0])[None, None, :]
    s_squared = fx**2 + fy**2 + fz**2
    transform *= np.exp(-b * s_squared / 4.0)
    return replace(density, data=np.fft.irfftn(transform, s=data.shape, axes=(0, 1, 2)).astype(np.float32))


def model_metrics(model: Model, xyz: np.ndarray, restraints: Restraints, density: Map,
                  resolution: float) -> dict[str, float]:
    """CC_mask, CC_box, CC_volume, CC_peaks and bond/angle r.m.s.d. of coordinates ``xyz``."""
    metrics = correlations(model, xyz, density, resolution)
    deviations = deviation_summary(xyz, restraints)
    metrics["bond_rmsd"] = deviations["bonds"]["rmsd"]
    metrics["angle_rmsd"] = deviations["angles"]["rmsd"]
    return metrics


def refine(model: Model, density: Map, options: RefineOptions,
           restraints: Restraints | None = None, xyz: np.ndarray | None = None) -> RefinementResult:
    """Refine ``model`` (or coordinates ``xyz`` of it) into ``density``.

    Parameters
    ----------
    model
        Model (topology, identifiers, B).
    density
        Target map (any box; it is cut around the model here).
    options
        See :class:`RefineOptions`.
    restraints
        Prebuilt restraints (default: built from the monomer library).
    xyz
        Starting coordinates (default ``model.xyz``).

    Returns
    -------
    RefinementResult
    """
    started = time.perf_counter()
    xyz = np.array(model.xyz if xyz is None else xyz, dtype=np.float64, copy=True)
    restraints = build_restraints(model) if restraints is None else restraints
    target_map = prepare_map(density, xyz, options.box_margin, options.map_b)
    packed = pack_restraints(restraints)
    map_weights = map_target_weights(model.atomic_number, model.is_hydrogen)

    before = model_metrics(model, xyz, restraints, target_map, options.resolution)
    log.info("start      cc_mask %.4f cc_box %.4f bond %.4f angle %.3f", before["cc_mask"],
             before["cc_box"], before["bond_rmsd"], before["angle_rmsd"])

    def searched_weight(coordinates: np.ndarray, coarse: bool) -> WeightSearchResult:
        # the first search only has to start cycle 1 in the right decade: 2 weights per
        # decade and 50 iterations; the search after cycle 1 uses the full ladder
        extra = {"ladder": COARSE_LADDER, "iterations": 50} if coarse else {}
        found = search_weight(model, restraints, target_map, coordinates, map_weights,
                              seed=options.seed, bond_rmsd_target=options.bond_rmsd_target,
                              angle_rmsd_target=options.angle_rmsd_target, **extra)
        log.info("weight     %.4g (searched on %d segments)", found.weight, len(found.segments))
        return found

    search = None
    if options.weight is None:
        search = searched_weight(xyz, coarse=options.macro_cycles > 1)
        weight = search.weight
    else:
        weight = float(options.weight)
        log.info("weight     %.4g (given)", weight)

    if options.rigid_body:
        from varref.refine.rigid_body import rigid_body_fit

        xyz = rigid_body_fit(model, xyz, target_map, map_weights)
        log.info("rigid body cc_mask %.4f", correlations(model, xyz, target_map, options.resolution)["cc_mask"])

    cycles = []
    target = RefinementTarget(packed, target_map, map_weights, np.array([weight]), xyz[np.newaxis],
                              method=options.interpolation)
    for cycle in range(1, options.macro_cycles + 1):
        result = minimise_lbfgs(target, target.pack(xyz[np.newaxis]),
                                max_iterations=options.iterations, max_step=options.max_step)
        xyz = target.unpack(result.x, np.array([0]))[0]
        metrics = model_metrics(model, xyz, restraints, target_map, options.resolution)
        metrics["cycle"] = cycle
        metrics["iterations"] = int(result.iterations[0])
        metrics["weight"] = weight
        cycles.append(metrics)
        log.info("cycle %d/%d  cc_mask %.4f cc_box %.4f bond %.4f angle %.3f (%d iterations)",
                 cycle, options.macro_cycles, metrics["cc_mask"], metrics["cc_box"],
                 metrics["bond_rmsd"], metrics["angle_rmsd"], metrics["iterations"])
        if cycle == 1 and options.weight is None and options.macro_cycles > 1:
            search = searched_weight(xyz, coarse=False)
            weight = search.weight
            target.weights[:] = weight
    if options.final_cc:
        xyz = _final_cc_stage(model, xyz, packed, restraints, target_map, weight, map_weights,
                              options, cycles)
    after = cycles[-1] if cycles else before
    after = {k: v for k, v in after.items() if k not in ("cycle", "iterations", "weight")}
    return RefinementResult(xyz, weight, search, before, after, cycles, time.perf_counter() - started)


def _final_cc_stage(model: Model, xyz: np.ndarray, packed, restraints: Restraints, target_map: Map,
                    weight: float, map_weights: np.ndarray, options: RefineOptions,
                    cycles: list[dict]) -> np.ndarray:
    """Polish with the CC target; keep the result only if it raises CC_mask with geometry
    inside the targets (or no worse than before the stage), halving the CC weight up to
    three times when the geometry is strained (noisy real maps pull atoms into noise)."""
    from varref.refine.cc_polish import polish_with_cc

    entry = cycles[-1] if cycles else model_metrics(model, xyz, restraints, target_map, options.resolution)
    bond_limit = max(options.bond_rmsd_target, entry["bond_rmsd"])
    angle_limit = max(options.angle_rmsd_target, entry["angle_rmsd"])
    scale = 1.0
    for _ in range(4):
        polished = polish_with_cc(model, xyz, packed, target_map, options.resolution,
                                  weight * scale, map_weights, iterations=options.final_cc_iterations)
        metrics = model_metrics(model, polished, restraints, target_map, options.resolution)
        if metrics["bond_rmsd"] <= bond_limit and metrics["angle_rmsd"] <= angle_limit:
            break
        scale *= 0.5
    else:
        log.info("final CC   skipped: geometry strained even at 1/8 of the weight")
        return xyz
    if metrics["cc_mask"] <= entry["cc_mask"]:
        log.info("final CC   skipped: CC_mask did not improve")
        return xyz
    metrics.update(cycle="final-cc", iterations=options.final_cc_iterations, weight=weight * scale)
    cycles.append(metrics)
    log.info("final CC   cc_mask %.4f cc_box %.4f bond %.4f angle %.3f (CC weight scale %.3g)",
             metrics["cc_mask"], metrics["cc_box"], metrics["bond_rmsd"], metrics["angle_rmsd"], scale)
    return polished
