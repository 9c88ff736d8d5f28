"""L-BFGS of K independent small problems entirely in numba (the weight search's trials).

The weight search refines 10 segments x 9 trial weights for 50-100 iterations each: ~1,000
L-BFGS iterations of problems of a few hundred atoms, where the Python around the kernels
(term dispatch, pair-list bookkeeping, line-search indexing) costs as much as the kernels and
holds the GIL, so segments in threads barely overlap. Here one call minimises every problem of
a segment with the GIL released:

    T_k(x) = w_k T_map(x) + Σ_t T_t(x),   t over the restraint terms in the caller's order,

with the same kernels, the same sums in the same order and the same L-BFGS
(:func:`varref.refinement.lbfgs.minimise_lbfgs`: its direction and bookkeeping kernels, its
Armijo backtracking, its per-problem stopping) as the Python path, so a trial gives the
same numbers either way (tested bit for bit), riding hydrogens included (each follows its
parent by a fixed offset, its gradient added to the parent's). Each term crosses as a tuple of arrays in the
slot of its kind; absent kinds get empty placeholders and are not in ``order``.

Kinds (``order`` codes): :data:`MAP` (atom-centred map value, the one data term, first),
:data:`GEOMETRY` (covalent restraints and buffered non-bonded repulsion),
:data:`RAMACHANDRAN`, :data:`TORSION` (harmonic torsions: C-beta), :data:`TOPOUT_A` and
:data:`TOPOUT_B` (top-out torsions: rotamers, reference model), :data:`DISTANCE` (top-out
distances: secondary structure), :data:`NCS` (NCS torsion similarity).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from varref.engine.distance_topout import distance_topout_value_and_gradient
from varref.engine.lbfgs_direction import _direction_kernel, row_dot
from varref.engine.lbfgs_update import (
    ARMIJO,
    GRADIENT_TOLERANCE,
    HISTORY,
    MAX_TRIES,
    RELATIVE_TOLERANCE,
    SHRINK,
    _accept_kernel,
)
from varref.engine.map_target import _map_target_kernel
from varref.engine.ncs_torsions import ncs_torsion_value_and_gradient
from varref.engine.neighbours import _nonbonded_pairs_cell_list, max_displacement_sq
from varref.engine.ramachandran import ramachandran_value_and_gradient
from varref.engine.restraint_target import KernelArrays, _evaluate_model
from varref.engine.riding_variables import fold_row, scatter_row
from varref.engine.topout_torsions import topout_torsion_value_and_gradient
from varref.engine.torsions import torsion_value_and_gradient

__all__ = ["MAP", "GEOMETRY", "RAMACHANDRAN", "TORSION", "TOPOUT_A", "TOPOUT_B", "DISTANCE",
           "NCS", "N_KINDS", "empty_slots", "fused_value_gradient", "minimise_fused"]

MAP, GEOMETRY, RAMACHANDRAN, TORSION, TOPOUT_A, TOPOUT_B, DISTANCE, NCS = range(8)
N_KINDS = 8


def empty_slots() -> list[tuple]:
    """Placeholder argument tuples of every kind (typed like real ones, nothing in them)."""
    i4 = np.zeros((0, 4), np.int64)
    f1 = np.zeros(0)
    i1 = np.zeros(0, np.int64)
    topout = (i4, f1, f1, f1, i1, f1)
    return [
        None, None,  # MAP and GEOMETRY are required
        (np.zeros((0, 5), np.int64), i1, f1, np.zeros((1, 1, 1)), 0.0, 1.0),
        (i4, f1, f1, i1),
        topout, topout,
        (np.zeros((0, 2), np.int64), f1, f1, f1, f1),
        (i4, np.zeros(1, np.int64), i1, f1, f1),
    ]


@njit(nogil=True, cache=True)
def _evaluate(xyz, grad, scratch, terms6, weight, order, map_args, geometry, pairs, contact,
              rama, torsion, topout_a, topout_b, distance, ncs):
    """``w T_map + Σ T_t`` of one problem; gradient to ``grad``. Sums as
    :meth:`varref.refinement.objective.Objective.evaluate` does: the map term first
    (``(0 + g) w``), then each restraint term's own gradient added in ``order``."""
    n = xyz.shape[0]
    total = 0.0
    for t in range(order.shape[0]):
        code = order[t]
        if code == MAP:
            data, origin, voxel, atom_weights, method = map_args
            value = _map_target_kernel(data, origin, voxel, xyz, atom_weights, method, scratch)
            total = 0.0 + weight * value
            for i in range(n):
                for c in range(3):
                    grad[i, c] = (0.0 + scratch[i, c]) * weight
            continue
        if code == GEOMETRY:
            arrays, nb_topology, nb_scalars = geometry
            value = _evaluate_model(xyz, scratch, terms6, KernelArrays(*arrays), pairs, contact,
                                    nb_scalars[7])
        else:
            scratch[:, :] = 0.0
            if code == RAMACHANDRAN:
                atoms, classes, weights, table, r_origin, spacing = rama
                value = 0.0 + ramachandran_value_and_gradient(xyz, atoms, classes, weights, table,
                                                              r_origin, spacing, scratch)
            elif code == TORSION:
                atoms, ideal, weights, period = torsion
                value = 0.0 + torsion_value_and_gradient(xyz, atoms, ideal, weights, period,
                                                         scratch)
            elif code == TOPOUT_A:
                atoms, ideal, weights, limit, period, flat = topout_a
                value = 0.0 + topout_torsion_value_and_gradient(xyz, atoms, ideal, weights, limit,
                                                                period, flat, scratch)
            elif code == TOPOUT_B:
                atoms, ideal, weights, limit, period, flat = topout_b
                value = 0.0 + topout_torsion_value_and_gradient(xyz, atoms, ideal, weights, limit,
                                                                period, flat, scratch)
            elif code == DISTANCE:
                atoms, ideal, weights, limit, flat = distance
                value = 0.0 + distance_topout_value_and_gradient(xyz, atoms, ideal, weights,
                                                                 limit, flat, scratch)
            else:  # NCS
                atoms, offsets, period, weights, limit = ncs
                value = 0.0 + ncs_torsion_value_and_gradient(xyz, atoms, offsets, period,
                                                             weights, limit, scratch)
        total += value
        for i in range(n):
            for c in range(3):
                grad[i, c] += scratch[i, c]
    return total


@njit(nogil=True, cache=True)
def _pair_list(xyz, geometry):
    arrays, nb_topology, s = geometry
    radius, hbond_type, partner_offsets, partners, partner_kind = nb_topology
    # s: cutoff, k_rep, factor_1_4, shrink_donor_acceptor, minimum_distance,
    #    default_distance, buffer, c_rep
    return _nonbonded_pairs_cell_list(xyz, s[0], radius, hbond_type, partner_offsets, partners,
                                      partner_kind, s[1], s[2], s[3], s[4], s[5], s[6])


@njit(nogil=True, cache=True)
def _value_gradient_at(x, full, moving, riders, reference, built, pair_state, grad_full, scratch,
                       terms6, weight, order, map_args, geometry, rama, torsion, topout_a,
                       topout_b, distance, ncs, g_out, folded):
    """The objective at minimiser variables ``x`` (moving atoms, flat) of one problem:
    scatter into ``full`` (riding hydrogens follow their parents), refresh the pair list
    when an atom moved more than buffer/2 since its build (as GeometryTerm does), evaluate,
    gather the moving atoms' gradient (a riding hydrogen's added to its parent's)."""
    hydrogen, parent, parent_slot, offset = riders
    scatter_row(x.reshape((moving.shape[0], 3)), full, moving, hydrogen, parent, offset)
    half = 0.5 * geometry[2][6]
    if not built[0] or not (max_displacement_sq(full, reference) <= half * half):
        pairs, contact = _pair_list(full, geometry)
        pair_state[0] = (pairs, contact)
        reference[:, :] = full
        built[0] = True
    pairs, contact = pair_state[0]
    value = _evaluate(full, grad_full, scratch, terms6, weight, order, map_args, geometry, pairs,
                      contact, rama, torsion, topout_a, topout_b, distance, ncs)
    # a riding hydrogen's gradient added to its parent's (RidingHydrogens.fold, bit for bit)
    fold_row(grad_full, moving, hydrogen, parent_slot, folded, g_out.reshape((moving.shape[0], 3)))
    return value


@njit(nogil=True, cache=True)
def _minimise_one(full, moving, hydrogen, parent, parent_slot, weight, order, map_args, geometry,
                  rama, torsion, topout_a, topout_b, distance, ncs, max_iterations, max_step,
                  history, relative_tolerance, gradient_tolerance):
    """L-BFGS of one problem in place on ``full`` (N, 3): the algorithm of
    :func:`varref.refinement.lbfgs.minimise_lbfgs` with ``max_step`` for K = 1. Riding
    hydrogens keep their offsets from their parents in ``full`` as it comes in."""
    n_atoms = full.shape[0]
    n = 3 * moving.shape[0]
    offset = np.empty((hydrogen.shape[0], 3))
    for r in range(hydrogen.shape[0]):
        for c in range(3):
            offset[r, c] = full[hydrogen[r], c] - full[parent[r], c]
    riders = (hydrogen, parent, parent_slot, offset)
    folded = np.empty((moving.shape[0], 3))
    grad_full = np.empty((n_atoms, 3))
    scratch = np.empty((n_atoms, 3))
    terms6 = np.empty(6)
    reference = np.empty((n_atoms, 3))
    built = np.zeros(1, np.bool_)
    pair_state = [(np.zeros((0, 2), np.int64), np.zeros(0))]
    x = np.empty((1, n))
    for j in range(moving.shape[0]):
        for c in range(3):
            x[0, 3 * j + c] = full[moving[j], c]
    value = np.empty(1)
    gradient = np.empty((1, n))
    value[0] = _value_gradient_at(x[0], full, moving, riders, reference, built, pair_state,
                                  grad_full, scratch, terms6, weight, order, map_args, geometry,
                                  rama, torsion, topout_a, topout_b, distance, ncs, gradient[0],
                                  folded)
    s_hist = np.zeros((1, history, n))
    y_hist = np.zeros((1, history, n))
    rho_hist = np.zeros((1, history))
    n_stored = np.zeros(1, np.int64)
    head = np.zeros(1, np.int64)
    iterations = np.zeros(1, np.int64)
    largest = 0.0
    for i in range(n):
        largest = max(largest, abs(gradient[0, i]))
    converged = np.zeros(1, np.bool_)
    converged[0] = largest < gradient_tolerance
    active = np.zeros(1, np.bool_)
    active[0] = not converged[0]
    members = np.zeros(1, np.int64)
    direction = np.empty((1, n))
    trial = np.empty(n)
    g_trial = np.empty(n)
    new_x = np.empty((1, n))
    new_value = np.empty(1)
    new_gradient = np.empty((1, n))
    accepted = np.zeros(1, np.bool_)
    for _ in range(max_iterations):
        if not active[0]:
            break
        _direction_kernel(gradient, members, s_hist, y_hist, rho_hist, n_stored, head,
                          direction)
        d = direction[0]
        slope = row_dot(d, gradient[0])
        if slope >= 0.0:  # not a descent direction: restart from -g
            for i in range(n):
                d[i] = -gradient[0, i]
            n_stored[0] = 0
            slope = -row_dot(d, d)
        step = 1.0
        longest = 0.0
        for i in range(n):
            longest = max(longest, abs(d[i]))
        if longest > max_step:
            step = max_step / longest
        # Armijo backtracking (refinement.lbfgs._backtrack)
        accepted[0] = False
        for i in range(n):
            new_x[0, i] = x[0, i]
            new_gradient[0, i] = 0.0
        new_value[0] = value[0]
        for _try in range(MAX_TRIES):
            for i in range(n):
                trial[i] = x[0, i] + step * d[i]
            f = _value_gradient_at(trial, full, moving, riders, reference, built, pair_state,
                                   grad_full, scratch, terms6, weight, order, map_args, geometry,
                                   rama, torsion, topout_a, topout_b, distance, ncs, g_trial,
                                   folded)
            if f <= value[0] + ARMIJO * step * slope:
                for i in range(n):
                    new_x[0, i] = trial[i]
                    new_gradient[0, i] = g_trial[i]
                new_value[0] = f
                accepted[0] = True
                break
            step *= SHRINK
        _accept_kernel(members, new_x, new_value, new_gradient, accepted, x, value, gradient,
                       s_hist, y_hist, rho_hist, n_stored, head, iterations, active, converged,
                       relative_tolerance, gradient_tolerance)
    scatter_row(x[0].reshape((moving.shape[0], 3)), full, moving, hydrogen, parent, offset)
    return iterations[0]


@njit(nogil=True, cache=True)
def _minimise_problems(xyz, moving, hydrogen, parent, parent_slot, weights, order, map_args,
                       geometry, rama, torsion, topout_a, topout_b, distance, ncs,
                       max_iterations, max_step, history, relative_tolerance,
                       gradient_tolerance, iterations):
    for k in range(xyz.shape[0]):
        iterations[k] = _minimise_one(xyz[k], moving, hydrogen, parent, parent_slot, weights[k],
                                      order, map_args, geometry, rama, torsion, topout_a,
                                      topout_b, distance, ncs, max_iterations, max_step, history,
                                      relative_tolerance, gradient_tolerance)


def _slots(order: np.ndarray, slots: list) -> tuple:
    order = np.ascontiguousarray(order, dtype=np.int64)
    if order.ndim != 1 or len(order) == 0 or order[0] != MAP or MAP in order[1:]:
        raise ValueError("order must start with the map term and hold it once")
    if GEOMETRY not in order or len(set(order.tolist())) != len(order):
        raise ValueError("order must hold the geometry term and no kind twice")
    if order.min() < 0 or order.max() >= N_KINDS:
        raise ValueError(f"order codes must lie in [0, {N_KINDS})")
    if len(slots) != N_KINDS:
        raise ValueError(f"{N_KINDS} slots expected, got {len(slots)}")
    return order, tuple(_read_only(slot) for slot in slots)


def _read_only(value):
    """Arrays as read-only views (no copy): numba types read-only and writeable arrays
    apart, and a table read from a cache may be either — one compiled signature for all."""
    if isinstance(value, np.ndarray):
        view = value.view()
        view.flags.writeable = False
        return view
    if isinstance(value, tuple):
        return tuple(_read_only(v) for v in value)
    return value


def minimise_fused(start: np.ndarray, moving: np.ndarray, weights: np.ndarray,
                   order: np.ndarray, slots: list, max_iterations: int, max_step: float,
                   history: int = HISTORY, relative_tolerance: float = RELATIVE_TOLERANCE,
                   gradient_tolerance: float = GRADIENT_TOLERANCE,
                   riding: tuple[np.ndarray, np.ndarray] | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Minimise ``w_k T_map + Σ T_t`` for K problems from ``start`` (one call, GIL released).

    Parameters
    ----------
    start : (K, N, 3) float64
        Starting coordinates; atoms not ``moving`` stay where they are.
    moving : (N,) bool
    weights : (K,) float64
        Data weight per problem.
    order : (T,) int64
        Kind codes of the terms, the map first, then the restraints in the order their
        gradients are summed.
    slots : list of N_KINDS tuples
        Arguments of each kind (:func:`empty_slots` for the absent ones); the arrays are
        those the single-model kernels take and are not checked here (the terms built and
        validated them).
    max_iterations, max_step, history, relative_tolerance, gradient_tolerance
        As :func:`varref.refinement.lbfgs.minimise_lbfgs`.
    riding : (hydrogen, parent) int64 arrays, optional
        Hydrogens that ride on their parents as in
        :class:`~varref.refinement.objective.Objective`: not variables, each keeps its offset
        from its parent in ``start`` and its gradient goes to its parent (if that moves).

    Returns
    -------
    xyz : (K, N, 3) float64
        Minimised coordinates.
    iterations : (K,) int64
    """
    xyz = np.array(start, dtype=np.float64, order="C", copy=True)
    if xyz.ndim != 3 or xyz.shape[2] != 3:
        raise ValueError(f"start must be (K, N, 3), got {xyz.shape}")
    variables = np.array(moving, dtype=bool, copy=True)
    if variables.shape != (xyz.shape[1],):
        raise ValueError(f"moving must be ({xyz.shape[1]},), got {variables.shape}")
    hydrogen = parent = np.zeros(0, np.int64)
    if riding is not None:
        hydrogen, parent = (np.ascontiguousarray(a, dtype=np.int64) for a in riding)
        if hydrogen.shape != parent.shape or hydrogen.ndim != 1:
            raise ValueError("riding must be two equally long index arrays")
        variables[hydrogen] = False
    moving_index = np.flatnonzero(variables).astype(np.int64)
    slot = np.full(xyz.shape[1], -1, dtype=np.int64)
    slot[moving_index] = np.arange(len(moving_index))
    parent_slot = slot[parent]
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    if weights.shape != (xyz.shape[0],):
        raise ValueError(f"{len(weights)} weights for {xyz.shape[0]} problems")
    if not max_step > 0:
        raise ValueError("max_step must be > 0")
    order, slots = _slots(order, slots)
    iterations = np.zeros(xyz.shape[0], np.int64)
    _minimise_problems(xyz, moving_index, hydrogen, parent, parent_slot, weights, order, *slots,
                       int(max_iterations),
                       float(max_step), int(history), float(relative_tolerance),
                       float(gradient_tolerance), iterations)
    return xyz, iterations


@njit(nogil=True, cache=True)
def _value_gradient_once(xyz, weight, order, map_args, geometry, rama, torsion, topout_a,
                         topout_b, distance, ncs, grad):
    scratch = np.empty(xyz.shape)
    terms6 = np.empty(6)
    pairs, contact = _pair_list(xyz, geometry)
    return _evaluate(xyz, grad, scratch, terms6, weight, order, map_args, geometry, pairs,
                     contact, rama, torsion, topout_a, topout_b, distance, ncs)


def fused_value_gradient(xyz: np.ndarray, weight: float, order: np.ndarray,
                         slots: list) -> tuple[float, np.ndarray]:
    """The fused objective and its gradient at (N, 3) coordinates (pair list built there);
    for tests and for checking a term's slot against its Python evaluation."""
    xyz = np.ascontiguousarray(xyz, dtype=np.float64)
    order, slots = _slots(order, slots)
    grad = np.empty_like(xyz)
    value = _value_gradient_once(xyz, float(weight), order, *slots, grad)
    return float(value), grad
