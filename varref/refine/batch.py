"""Refine K starting models of one topology together (ensembles, series members).

The K problems run the same macro-cycles as :func:`varref.refine.protocol.refine` with one
given weight, but as one batched minimisation: every L-BFGS round evaluates all unfinished
members in a single call of the engine's batched kernels. Each member keeps its own L-BFGS
history and convergence, so the result for a member does not depend on its batch mates.
"""

from __future__ import annotations

import time

import numpy as np

from varref.engine.map_target import map_target_weights
from varref.engine.restraint_target import pack_restraints
from varref.maps import Map
from varref.model import Model
from varref.refine.lbfgs import minimise_lbfgs
from varref.refine.protocol import RefineOptions, model_metrics
from varref.refine.target import RefinementTarget
from varref.restraints import Restraints


def refine_batch(model: Model, prepared_map: Map, restraints: Restraints, starts: np.ndarray,
                 weight: float, options: RefineOptions) -> tuple[np.ndarray, list[dict[str, float]]]:
    """Refine ``starts`` (K, N, 3) into a map already boxed and normalised.

    Returns
    -------
    xyz : (K, N, 3) refined coordinates
    metrics : one dict per member: cc_mask, cc_box, cc_volume, cc_peaks, bond_rmsd,
        angle_rmsd after refinement, the same before (``*_start``), weight and the
        member's share of the run time.
    """
    started = time.perf_counter()
    starts = np.asarray(starts, dtype=np.float64)
    n_members = len(starts)
    map_weights = map_target_weights(model.atomic_number, model.is_hydrogen)
    target = RefinementTarget(pack_restraints(restraints), prepared_map, map_weights,
                              np.full(n_members, weight), starts, method=options.interpolation)
    members = np.arange(n_members)
    xyz = starts.copy()
    for _ in range(options.macro_cycles):
        result = minimise_lbfgs(target, target.pack(xyz), max_iterations=options.iterations,
                                max_step=options.max_step)
        xyz = target.unpack(result.x, members)
    share = (time.perf_counter() - started) / n_members
    metrics = []
    for k in range(n_members):
        before = model_metrics(model, starts[k], restraints, prepared_map, options.resolution)
        after = model_metrics(model, xyz[k], restraints, prepared_map, options.resolution)
        row = {key: float(value) for key, value in after.items()}
        row.update({"cc_mask_start": before["cc_mask"], "bond_rmsd_start": before["bond_rmsd"],
                    "angle_rmsd_start": before["angle_rmsd"], "weight": float(weight),
                    "runtime_s": share})
        metrics.append(row)
    return xyz, metrics
