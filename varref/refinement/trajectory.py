"""Joint refinement of a map series with a trajectory (smoothness) prior.

The frames f = 0..F-1 of a series are refined together as *one* minimisation problem per
trajectory: all frames' coordinates x_f are concatenated into one variable vector and

    T(x_0..x_{F-1}) = Σ_f [ w T_map,f(x_f) + T_restraints(x_f) ]
                      + λ Σ_{f=1}^{F-2} Σ_i |x_{f+1,i} − 2 x_{f,i} + x_{f−1,i}|²

is minimised with the ordinary (per-problem) L-BFGS of :mod:`varref.refinement.lbfgs`. Because
the whole trajectory is one problem, the coupling is exact (no alternation). Several
trajectories (the members of a series, each from its own perturbed starts) are independent
problems of one batched minimisation.

Second differences penalise the curvature of each atom's path, not its motion: a trajectory
that is linear in the frame index (uniform motion along a latent coordinate, which is how
cryoSPARC 3DVA samples its frames) costs nothing, and the end frames are free ("natural"
boundary, as a smoothing spline) instead of being pulled towards their neighbours. A
first-difference prior (``order=1``) penalises the motion itself and shrinks the trajectory
towards its mean — it is kept for comparison (see ``docs/methods-ensembles.md``).

The automatic prior weight (:func:`automatic_prior_weight`) sets λ relative to the curvature
h of the data term per coordinate so that, in the quadratic approximation, the prior acts as
a low-pass filter along the frame axis that halves the amplitude of a path oscillating with
``period`` frames (the cut-off period).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from varref.engine.map_target import map_target_value_gradient_batched, map_target_weights
from varref.engine.restraint_target import pack_restraints
from varref.engine.riding_variables import scatter_riding
from varref.maps import Map
from varref.model import Model
from varref.refinement.lbfgs import minimise_lbfgs
from varref.refinement.metrics import model_metrics
from varref.refinement.options import RefineOptions
from varref.refinement.riding import RidingHydrogens, riding_hydrogens
from varref.refinement.terms import MACRO, Term, TermSetup, build_data_terms, build_restraint_terms
from varref.restraints import Restraints

log = logging.getLogger(__name__)


class TrajectoryPrior:
    """``λ Σ_f Σ_i |Δ^p x_{f,i}|²``: first (p = 1) or second (p = 2) differences along frames.

    Parameters
    ----------
    weight
        λ (per Å² of squared difference, in the units of the restraint terms).
    order
        1 (first differences, penalises motion) or 2 (second differences, penalises
        curvature; the default of joint refinement).
    """

    name = "trajectory_prior"

    def __init__(self, weight: float, order: int = 2) -> None:
        if order not in (1, 2):
            raise ValueError("order must be 1 or 2")
        if not (np.isfinite(weight) and weight >= 0):
            raise ValueError(f"prior weight must be a finite number >= 0, got {weight!r}")
        self.weight = float(weight)
        self.order = order

    def evaluate(self, trajectory: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Values (k,) and gradients (k, F, N, 3) for trajectories (k, F, N, 3)."""
        x = np.asarray(trajectory, dtype=np.float64)
        gradient = np.zeros_like(x)
        n_frames = x.shape[1]
        if n_frames <= self.order or self.weight == 0.0:
            return np.zeros(len(x)), gradient
        lam = self.weight
        if self.order == 1:
            d = x[:, 1:] - x[:, :-1]
            gradient[:, 1:] += 2.0 * lam * d
            gradient[:, :-1] -= 2.0 * lam * d
        else:
            d = x[:, 2:] - 2.0 * x[:, 1:-1] + x[:, :-2]
            gradient[:, 2:] += 2.0 * lam * d
            gradient[:, 1:-1] -= 4.0 * lam * d
            gradient[:, :-2] += 2.0 * lam * d
        values = lam * np.einsum("kfna,kfna->k", d, d)
        return values, gradient


class JointObjective:
    """Value and gradient of the joint series objective for K trajectories of F frames.

    Problem k of the minimiser is trajectory k; its variables are the (F, N, 3) coordinates
    of all frames, flattened. Restraint terms see the K·F coordinate sets as problems
    ``k·F + f`` (so per-problem state such as a non-bonded pair list is per frame and
    trajectory); frame f's data terms are those built on frame f's map.

    Parameters
    ----------
    frame_data_terms
        F lists of data terms, list f built on frame f's prepared map.
    restraint_terms
        Restraint terms of the topology (shared by all frames).
    prior
        The trajectory prior.
    weight
        Data weight w (one for the series).
    n_atoms
        N.
    riding, start
        Hydrogens that ride on their parents (:mod:`varref.refinement.riding`) and the
        (K, F, N, 3) trajectories whose parent–hydrogen offsets they keep: the variables are
        then the other atoms of every frame, and a hydrogen's gradient (data, restraints,
        prior) goes to its parent.
    """

    def __init__(self, frame_data_terms: list[list[Term]], restraint_terms: list[Term],
                 prior: TrajectoryPrior, weight: float, n_atoms: int,
                 riding: RidingHydrogens | None = None, start: np.ndarray | None = None) -> None:
        self.frame_data_terms = frame_data_terms
        self.restraint_terms = list(restraint_terms)
        self.prior = prior
        self.weight = float(weight)
        self.n_frames = len(frame_data_terms)
        self.n_atoms = n_atoms
        self.evaluations = 0
        self.riding = riding
        self.variables = np.ones(n_atoms, dtype=bool)
        if riding is not None:
            if start is None:
                raise ValueError("riding hydrogens need the start trajectories")
            self.variables[riding.hydrogen] = False
            self.start = np.array(start, dtype=np.float64, copy=True)
            self._offsets = self.start[:, :, riding.hydrogen] - self.start[:, :, riding.parent]
            self._parent_slot = riding.parent_slots(self.variables)
            self._variable_index = np.flatnonzero(self.variables)

    def pack(self, trajectory: np.ndarray) -> np.ndarray:
        """(K, F, N, 3) → (K, 3 F n) minimiser variables (n: the atoms that do not ride)."""
        if self.riding is not None:
            trajectory = trajectory[:, :, self.variables]
        return np.ascontiguousarray(trajectory.reshape(len(trajectory), -1), dtype=np.float64)

    def unpack(self, x: np.ndarray, members: np.ndarray | None = None) -> np.ndarray:
        """(k, 3 F n) → (k, F, N, 3) for trajectories ``members`` (default all)."""
        if self.riding is None:
            return x.reshape(len(x), self.n_frames, self.n_atoms, 3)
        members = np.arange(len(x)) if members is None else np.asarray(members)
        trajectory = self.start[members]  # a copy
        rows = np.ascontiguousarray(trajectory.reshape(-1, *trajectory.shape[2:]))  # (k F, N, 3)
        scatter_riding(np.reshape(x, (len(rows), -1)), rows, self._variable_index,
                       self.riding.hydrogen, self.riding.parent,
                       self._offsets[members].reshape(len(rows), -1, 3))
        return rows.reshape(trajectory.shape)

    def evaluate(self, trajectory: np.ndarray, members: np.ndarray,
                 parts: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Total value (k,) and gradient (k, F, N, 3); ``parts`` (if given) receives the
        data, restraint and prior values (k,) separately."""
        self.evaluations += 1
        k, n_frames, n_atoms, _ = trajectory.shape
        members = np.asarray(members, dtype=np.int64)
        problems = (members[:, None] * n_frames + np.arange(n_frames)).reshape(-1)
        flat = np.ascontiguousarray(trajectory.reshape(k * n_frames, n_atoms, 3))
        restraint_values = np.zeros(k)
        gradient = np.zeros((k * n_frames, n_atoms, 3))
        for term in self.restraint_terms:
            v, g = term.evaluate(flat, problems)
            restraint_values += v.reshape(k, n_frames).sum(axis=1)
            gradient += g
        gradient = gradient.reshape(k, n_frames, n_atoms, 3)
        data_values = np.zeros(k)
        for f, terms in enumerate(self.frame_data_terms):
            frame_xyz = np.ascontiguousarray(trajectory[:, f])
            for term in terms:
                v, g = term.evaluate(frame_xyz, problems.reshape(k, n_frames)[:, f])
                data_values += v
                gradient[:, f] += self.weight * g
        prior_values, prior_gradient = self.prior.evaluate(trajectory)
        gradient += prior_gradient
        if parts is not None:
            parts.update(data=self.weight * data_values, restraints=restraint_values,
                         prior=prior_values)
        return self.weight * data_values + restraint_values + prior_values, gradient

    def __call__(self, x: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        values, gradient = self.evaluate(self.unpack(x, members), members)
        if self.riding is not None:
            gradient = self.riding.fold(gradient, self.variables, self._parent_slot)
        return values, np.ascontiguousarray(gradient.reshape(len(x), -1))


def data_curvature(model: Model, density: Map, xyz: np.ndarray, method: str = "tricubic",
                   step: float = 0.05) -> float:
    """Mean curvature h (per Å²) of the atom-centred map term per heavy-atom coordinate.

    T_map = −Σ_m w_m ρ(x_m) is a sum of one-atom terms, so shifting every atom by ±ε along
    one axis gives every atom's diagonal second derivative at once (central differences of
    the analytic gradient). Atoms where the map is convex (off their peak) count with their
    negative curvature, so a start far from its density gives a smaller h.
    """
    weights = map_target_weights(model.atomic_number, model.is_hydrogen)
    heavy = weights > 0
    shifted = []
    for axis in range(3):
        for sign in (1.0, -1.0):
            moved = np.array(xyz, dtype=np.float64, copy=True)
            moved[:, axis] += sign * step
            shifted.append(moved)
    _, gradient = map_target_value_gradient_batched(density.data, density.origin, density.voxel_size,
                                                    np.ascontiguousarray(shifted), weights, method)
    diagonal = [(gradient[2 * a, heavy, a] - gradient[2 * a + 1, heavy, a]) / (2.0 * step)
                for a in range(3)]
    return float(np.mean(diagonal))


def default_period(n_frames: int) -> float:
    """Default cut-off period of the prior, frames: half the series (at least 3 frames), i.e.
    paths with up to two full oscillations over the series pass, faster wiggles are noise."""
    return max(3.0, n_frames / 2.0)


def automatic_prior_weight(curvature: float, weight: float, period: float,
                           order: int = 2) -> float:
    """λ such that the prior is a low-pass filter along frames with cut-off period ``period``.

    For one coordinate with data curvature c = w·h (quadratic approximation of the data
    term about its per-frame optimum y_f), minimising Σ_f c (x_f − y_f)² + λ Σ_f (Δ² x_f)²
    filters y with the frequency response 1 / (1 + (λ/c)·16 sin⁴(ω/2)) (ω in radians per
    frame). A gain of 1/2 at the period P = 2π/ω gives λ = c / (16 sin⁴(π/P)): paths
    changing over many more frames than P pass almost unchanged, faster wiggles are damped.
    For first differences (``order=1``) the response is 1 / (1 + (λ/c)·4 sin²(ω/2)) and
    λ = c / (4 sin²(π/P)) — the same cut-off, for comparisons.
    """
    if period < 2.0:
        raise ValueError("the cut-off period must be at least 2 frames")
    c = max(weight * curvature, 0.0)
    s = np.sin(np.pi / period)
    return c / (16.0 * s ** 4) if order == 2 else c / (4.0 * s ** 2)


@dataclass
class JointResult:
    """Refined trajectories (K, F, N, 3), the prior weight λ, per-(trajectory, frame) metrics
    before and after, and what the minimiser did."""

    xyz: np.ndarray
    prior_weight: float
    before: list[list[dict[str, float]]]
    after: list[list[dict[str, float]]]
    iterations: np.ndarray
    runtime_s: float
    prior_value: np.ndarray


def refine_joint(model: Model, frame_maps: list[Map], restraints: Restraints, starts: np.ndarray,
                 options: RefineOptions, prior_weight: float, order: int = 2,
                 joint_iterations: int | None = None) -> JointResult:
    """Refine K trajectories through F prepared maps jointly (module docstring).

    Parameters
    ----------
    model
        Topology.
    frame_maps
        F prepared (boxed, normalised) maps, frame order.
    restraints
        Restraints of ``model``.
    starts
        (K, F, N, 3) starting coordinates.
    options
        ``weight`` (required), ``macro_cycles``, ``iterations``, ``max_step``,
        ``interpolation``, restraint switches. The conformational priors join after
        macro-cycle 1, as in :func:`~varref.refinement.pipeline.refine_coordinates`.
        Rotamer fit, rigid body, B-factors and the final CC stage are not part of joint
        refinement. Hydrogens ride on their parents as in the pipeline (``hydrogens``),
        placed in their frames before every macro-cycle.
    prior_weight
        λ of :class:`TrajectoryPrior`.
    order
        Difference order of the prior (2 by default).
    joint_iterations
        L-BFGS iterations per macro-cycle (default ``options.iterations × F``: the prior
        passes information one frame per iteration, and the problem has F times the
        variables of one frame).
    """
    from varref.refinement.pipeline import DEFERRED_TERMS

    if options.weight is None:
        raise ValueError("joint refinement needs a data weight")
    started = time.perf_counter()
    trajectory = np.array(starts, dtype=np.float64, copy=True)
    n_traj, n_frames, n_atoms, _ = trajectory.shape
    if len(frame_maps) != n_frames:
        raise ValueError(f"{len(frame_maps)} maps for {n_frames} frames")

    def metrics(xyz: np.ndarray) -> list[list[dict[str, float]]]:
        return [[model_metrics(model, xyz[k, f], restraints, frame_maps[f], options.resolution)
                 for f in range(n_frames)] for k in range(n_traj)]

    before = metrics(trajectory)
    # hydrogens ride (riding.py): the terms lose the restraints that only place them
    riding = riding_hydrogens(model, restraints, options)
    term_restraints = riding.restraints(restraints) if riding is not None else restraints
    packed = pack_restraints(term_restraints)
    flat_start = trajectory.reshape(n_traj * n_frames, n_atoms, 3)
    setup = TermSetup(model, term_restraints, packed, None, options, flat_start)
    restraint_terms = build_restraint_terms(setup)
    deferred = DEFERRED_TERMS if options.macro_cycles > 1 else ()
    first_terms = [t for t in restraint_terms if t.name not in deferred]
    frame_terms = [build_data_terms(TermSetup(model, term_restraints, packed, density, options,
                                              trajectory[:, f]), MACRO)
                   for f, density in enumerate(frame_maps)]
    prior = TrajectoryPrior(prior_weight, order)
    iterations = options.iterations * n_frames if joint_iterations is None else joint_iterations
    log.info("joint: %d trajectory(ies) x %d frames, weight %.4g, prior weight %.4g (order %d), "
             "%d iterations per cycle", n_traj, n_frames, options.weight, prior_weight, order,
             iterations)
    total_iterations = np.zeros(n_traj, dtype=np.int64)
    for cycle in range(1, options.macro_cycles + 1):
        terms = first_terms if cycle == 1 else restraint_terms
        if riding is not None:  # hydrogens placed from their frames, then riding this cycle
            trajectory = riding.place(trajectory)
        objective = JointObjective(frame_terms, terms, prior, options.weight, n_atoms,
                                   riding=riding, start=trajectory)
        result = minimise_lbfgs(objective, objective.pack(trajectory), max_iterations=iterations,
                                max_step=options.max_step)
        trajectory = objective.unpack(result.x).copy()
        if riding is not None:
            trajectory = riding.place(trajectory)
        total_iterations += result.iterations
        log.info("joint cycle %d/%d: %s iterations", cycle, options.macro_cycles,
                 ", ".join(str(int(i)) for i in result.iterations))
    prior_value = prior.evaluate(trajectory)[0]
    after = metrics(trajectory)
    return JointResult(trajectory, float(prior_weight), before, after, total_iterations,
                       time.perf_counter() - started, prior_value)


class NeighbourPrior:
    """The terms of the trajectory prior that contain frame ``frame``, its neighbours fixed.

    For the alternating (block coordinate descent) scheme of long series: frame f is refined
    on its own with every second-difference triplet (t−1, t, t+1) that contains f, the other
    frames of the triplet held at their latest coordinates. Summed over the frames of a
    sweep this is the joint objective's prior, so each frame's step decreases the joint
    objective. A :class:`~varref.refinement.terms.base.Term` (restraint kind).

    Parameters
    ----------
    weight
        λ.
    frame, n_frames
        f and F.
    neighbours
        Offset (−2, −1, 1, 2) → (K, N, 3) fixed coordinates of frame f + offset for the K
        problems (members); offsets outside the series are ignored.
    """

    name = "trajectory_neighbours"
    kind = "restraint"

    def __init__(self, weight: float, frame: int, n_frames: int,
                 neighbours: dict[int, np.ndarray]) -> None:
        self.weight = float(weight)
        self.frame = frame
        self.n_frames = n_frames
        self.neighbours = {int(o): np.asarray(x, dtype=np.float64) for o, x in neighbours.items()}
        # centres t of the triplets (t-1, t, t+1) that contain f
        self.centres = [t for t in (frame - 1, frame, frame + 1) if 1 <= t <= n_frames - 2]
        for t in self.centres:
            for s in (t - 1, t, t + 1):
                if s != frame and (s - frame) not in self.neighbours:
                    raise ValueError(f"frame {s} (offset {s - frame}) is needed but not given")

    def evaluate(self, xyz: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        members = np.asarray(members, dtype=np.int64)
        values = np.zeros(len(xyz))
        gradient = np.zeros_like(xyz, dtype=np.float64)
        for t in self.centres:
            d = np.zeros_like(xyz, dtype=np.float64)
            for s, coefficient in ((t - 1, 1.0), (t, -2.0), (t + 1, 1.0)):
                d += coefficient * (xyz if s == self.frame else self.neighbours[s - self.frame][members])
            own = {t - 1: 1.0, t: -2.0, t + 1: 1.0}[self.frame]
            values += self.weight * np.einsum("kna,kna->k", d, d)
            gradient += 2.0 * self.weight * own * d
        return values, gradient

    def subset(self, atoms: np.ndarray) -> "NeighbourPrior":
        return NeighbourPrior(self.weight, self.frame, self.n_frames,
                              {o: x[:, atoms] for o, x in self.neighbours.items()})


def refine_frame_with_neighbours(model: Model, density: Map, restraints: Restraints,
                                 starts: np.ndarray, options: RefineOptions, prior: NeighbourPrior,
                                 macro_cycles: int) -> tuple[np.ndarray, np.ndarray]:
    """One frame's step of the alternating scheme: K members of frame f refined into its map
    with the restraints and the prior's terms of f (neighbours fixed).

    Returns the (K, N, 3) coordinates and the (K,) L-BFGS iterations used. The conformational
    priors join after macro-cycle 1 when there is more than one, as everywhere.
    """
    from varref.refinement.objective import Objective
    from varref.refinement.pipeline import DEFERRED_TERMS

    xyz = np.array(starts, dtype=np.float64, copy=True)
    riding = riding_hydrogens(model, restraints, options)  # as in refine_coordinates
    if riding is not None:
        restraints = riding.restraints(restraints)
    packed = pack_restraints(restraints)
    setup = TermSetup(model, restraints, packed, density, options, xyz)
    restraint_terms = build_restraint_terms(setup)
    deferred = DEFERRED_TERMS if macro_cycles > 1 else ()
    data_terms = build_data_terms(setup, MACRO)
    members = np.arange(len(xyz))
    iterations = np.zeros(len(xyz), dtype=np.int64)
    for cycle in range(1, macro_cycles + 1):
        terms = [t for t in restraint_terms if cycle > 1 or t.name not in deferred]
        if riding is not None:
            xyz = riding.place(xyz)
        objective = Objective(data_terms + terms + [prior], options.weight, xyz, riding=riding)
        result = minimise_lbfgs(objective, objective.pack(xyz), max_iterations=options.iterations,
                                max_step=options.max_step)
        xyz = objective.unpack(result.x, members)
        if riding is not None:
            xyz = riding.place(xyz)
        iterations += result.iterations
    return xyz, iterations
