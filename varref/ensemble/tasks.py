"""What a Dask worker runs: refine a batch of members of one frame and return their results.

Tasks are pure functions of their inputs (the starting coordinates of member m are derived
from the run seed and m alone), so a task re-run after a worker dies returns exactly what the
lost run would have, and the order in which tasks finish does not matter.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from varref.maps import Map
from varref.model import Model
from varref.perturbation import perturb_batch
from varref.refinement.options import RefineOptions
from varref.refinement.pipeline import refine_coordinates
from varref.restraints import Restraints


@dataclass(frozen=True)
class RunContext:
    """Everything a task needs that is shared by all tasks of a run (scattered once)."""

    model: Model
    restraints: Restraints
    options: RefineOptions
    weight: float
    perturb_rmsd: float
    seed: int


@dataclass
class MemberOutcome:
    frame: int
    member: int
    xyz: np.ndarray
    start_xyz: np.ndarray
    metrics: dict[str, float]
    b_iso: np.ndarray | None = None


def hold(value: object) -> object:
    """A task that returns its argument: puts a value on the cluster as a recomputable result
    (:func:`varref.ensemble.ensemble.share`)."""
    return value


def member_seed(seed: int, frame: int, member: int) -> int:
    """Seed of one member's perturbation: a function of the run seed, frame and member only."""
    return int(np.random.SeedSequence([seed, frame, member]).generate_state(1)[0])


def refine_members(context: RunContext, prepared_map: Map, frame: int, members: list[int],
                   start: np.ndarray | None = None) -> list[MemberOutcome]:
    """Perturb (if requested) and refine ``members`` of ``frame`` in one batch.

    ``start`` is the coordinates every member starts from before its perturbation (default:
    the model's); member m is perturbed by ``perturb_rmsd`` with :func:`member_seed`.
    """
    seeds = [member_seed(context.seed, frame, member) for member in members]
    # batched L-BFGS keeps every member's history separate, so a member's start (and result)
    # is the same whatever batch it lands in (tested)
    # members' starts are regularised to the refinement's geometry targets, not beyond
    # (the weight is given, so the start's geometry cannot move it; perturbation docstring)
    starts = perturb_batch(context.model, context.restraints, context.perturb_rmsd, seeds,
                           start=start, regularisation="to_targets")
    result = refine_coordinates(context.model, prepared_map, context.restraints, starts,
                                replace(context.options, weight=context.weight))
    share = result.runtime_s / len(members)
    outcomes = []
    for k, member in enumerate(members):
        metrics = dict(result.after[k])
        metrics.update({"cc_mask_start": result.before[k]["cc_mask"],
                        "bond_rmsd_start": result.before[k]["bond_rmsd"],
                        "angle_rmsd_start": result.before[k]["angle_rmsd"],
                        "weight": float(result.weight), "runtime_s": share})
        outcomes.append(MemberOutcome(frame, member, result.xyz[k], starts[k], metrics,
                                      result.b_iso[k]))
    return outcomes
