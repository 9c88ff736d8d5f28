"""The objective ``T_k = w_k Σ data terms + Σ restraint terms`` for K coordinate sets.

The only place where terms meet. It maps the minimiser's flat variables (the moving atoms of
each problem) to full coordinates and back, and sums the terms' values and gradients.
"""

from __future__ import annotations

import time

import numpy as np

from varref.engine.parallel import available, concurrently
from varref.engine.riding_variables import scatter_riding
from varref.refinement.riding import RidingHydrogens
from varref.refinement.terms.base import DATA, Term

#: Atoms x problems from which the terms are spread over threads (below it the hand-off,
#: ~50 us, costs more than the overlap gains).
MIN_ATOMS_CONCURRENT = 1000


def _balanced_groups(cost: np.ndarray, n_groups: int) -> list[list[int]]:
    """Term indices in ``n_groups`` groups of about equal summed cost (longest first, each to
    the lightest group), each group in term order."""
    groups: list[list[int]] = [[] for _ in range(n_groups)]
    load = np.zeros(n_groups)
    for index in np.argsort(-cost, kind="stable"):
        lightest = int(np.argmin(load))
        groups[lightest].append(int(index))
        load[lightest] += cost[index]
    return [sorted(group) for group in groups if group]


class Objective:
    """Value and gradient of ``w_k Σ_data T(x_k) + Σ_restraint T(x_k)`` for k = 0..K-1.

    Parameters
    ----------
    terms
        Data and restraint terms (see :mod:`varref.refinement.terms`).
    weights
        (K,) data weight of each problem (a scalar or length-1 array is repeated).
    start
        (K, N, 3) starting coordinates; atoms that do not move keep these.
    moving
        (N,) bool, the atoms refined (default all).
    riding
        Hydrogens that ride on their parents (:mod:`varref.refinement.riding`): not variables;
        each keeps its offset from its parent in ``start``.
    """

    def __init__(self, terms: list[Term], weights, start: np.ndarray,
                 moving: np.ndarray | None = None,
                 riding: RidingHydrogens | None = None) -> None:
        self.terms = list(terms)
        self.start = np.array(start, dtype=np.float64, copy=True)
        if self.start.ndim == 2:
            self.start = self.start[np.newaxis]
        n_problems, n_atoms, _ = self.start.shape
        self.weights = np.asarray(weights, dtype=np.float64).reshape(-1)
        if len(self.weights) == 1 and n_problems > 1:
            self.weights = np.repeat(self.weights, n_problems)
        if len(self.weights) != n_problems:
            raise ValueError(f"{len(self.weights)} weights for {n_problems} problems")
        self.moving = np.ones(n_atoms, bool) if moving is None else np.asarray(moving, bool)
        self.riding = riding
        # the minimiser's variables: the moving atoms, less the hydrogens that ride
        self.variables = self.moving.copy()
        if riding is not None:
            self.variables[riding.hydrogen] = False
            # each hydrogen keeps its offset from its parent (riding.py); the gradient on it
            # goes to its parent's variables (RidingHydrogens.fold)
            self._offsets = self.start[:, riding.hydrogen] - self.start[:, riding.parent]
            self._parent_slot = riding.parent_slots(self.variables)
        self._variable_index = np.flatnonzero(self.variables)
        self._all_moving = riding is None and bool(self.moving.all())
        self.evaluations = 0
        self._cost = np.zeros(len(self.terms))  # seconds of each term's last evaluation

    @property
    def n_problems(self) -> int:
        return self.start.shape[0]

    def pack(self, xyz: np.ndarray) -> np.ndarray:
        """(K, N, 3) coordinates → (K, 3 n_variables) minimiser variables."""
        return np.ascontiguousarray(xyz[:, self.variables].reshape(len(xyz), -1))

    def unpack(self, x: np.ndarray, members: np.ndarray) -> np.ndarray:
        """Minimiser variables of ``members`` → full (k, N, 3) coordinates."""
        if self._all_moving:  # every atom moves: the variables are the coordinates
            return np.array(x, dtype=np.float64).reshape(len(members), -1, 3)
        xyz = self.start[np.asarray(members)]  # a copy: atoms that do not move keep the start
        if self.riding is not None:
            return scatter_riding(x, xyz, self._variable_index, self.riding.hydrogen,
                                  self.riding.parent, self._offsets[members])
        xyz[:, self.variables] = x.reshape(len(members), -1, 3)
        return xyz

    def __call__(self, x: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        values, gradient = self.evaluate(self.unpack(x, members), members)
        if self._all_moving:
            return values, gradient.reshape(len(members), -1)
        if self.riding is not None:  # d/dx_P of f(x_P + d_H) adds the hydrogen's gradient
            folded = self.riding.fold(gradient, self.variables, self._parent_slot)
        else:
            folded = gradient[:, self.variables]
        return values, np.ascontiguousarray(folded.reshape(len(members), -1))

    def evaluate(self, xyz: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Total value (k,) and gradient (k, N, 3) for full coordinates of ``members``."""
        self.evaluations += 1
        terms = self.terms
        outputs: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(terms)
        if len(self._cost) != len(terms):
            self._cost = np.zeros(len(terms))

        def run(group: list[int]) -> None:
            for index in group:
                began = time.perf_counter()
                outputs[index] = terms[index].evaluate(xyz, members)
                self._cost[index] = time.perf_counter() - began

        n_threads = min(available(), len(terms))
        if n_threads > 1 and xyz.shape[0] * xyz.shape[1] >= MIN_ATOMS_CONCURRENT:
            # terms on threads in groups of about equal measured cost (the last evaluation's);
            # the sums below are in term order whatever the grouping, so results never
            # depend on threads or timings
            concurrently(*(lambda group=group: run(group)
                           for group in _balanced_groups(self._cost, n_threads)))
        else:
            run(list(range(len(terms))))
        w = self.weights[members]
        values = np.zeros(len(members))
        gradient = np.zeros_like(xyz)
        data = [output for term, output in zip(terms, outputs) if term.kind == DATA]
        if data:
            values += w * sum(term_values for term_values, _ in data)
            for _, term_gradient in data:
                gradient += term_gradient
            gradient *= w[:, None, None]
        for term, (term_values, term_gradient) in zip(terms, outputs):
            if term.kind != DATA:
                values += term_values
                gradient += term_gradient
        return values, gradient

    def term_values(self, xyz: np.ndarray, members: np.ndarray) -> dict[str, np.ndarray]:
        """Unweighted value of every term, (k,) each, keyed by term name (for logs)."""
        return {term.name: term.evaluate(xyz, members)[0] for term in self.terms}
