"""The objective ``T_k = w_k Σ data terms + Σ restraint terms`` for K coordinate sets.

The only place where terms meet. It maps the minimiser's flat variables (the moving atoms of
each problem) to full coordinates and back, and sums the terms' values and gradients.
"""

from __future__ import annotations

import numpy as np

from varref.refinement.terms.base import DATA, Term


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
    """

    def __init__(self, terms: list[Term], weights, start: np.ndarray,
                 moving: np.ndarray | None = None) -> None:
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
        self.evaluations = 0

    @property
    def n_problems(self) -> int:
        return self.start.shape[0]

    def pack(self, xyz: np.ndarray) -> np.ndarray:
        """(K, N, 3) coordinates → (K, 3 n_moving) minimiser variables."""
        return np.ascontiguousarray(xyz[:, self.moving].reshape(len(xyz), -1))

    def unpack(self, x: np.ndarray, members: np.ndarray) -> np.ndarray:
        """Minimiser variables of ``members`` → full (k, N, 3) coordinates."""
        xyz = self.start[members].copy()
        xyz[:, self.moving] = x.reshape(len(members), -1, 3)
        return xyz

    def __call__(self, x: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        values, gradient = self.evaluate(self.unpack(x, members), members)
        return values, np.ascontiguousarray(gradient[:, self.moving].reshape(len(members), -1))

    def evaluate(self, xyz: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Total value (k,) and gradient (k, N, 3) for full coordinates of ``members``."""
        self.evaluations += 1
        values = np.zeros(len(members))
        gradient = np.zeros_like(xyz)
        w = self.weights[members]
        for term in self.terms:
            term_values, term_gradient = term.evaluate(xyz, members)
            if term.kind == DATA:
                values += w * term_values
                gradient += w[:, None, None] * term_gradient
            else:
                values += term_values
                gradient += term_gradient
        return values, gradient

    def term_values(self, xyz: np.ndarray, members: np.ndarray) -> dict[str, np.ndarray]:
        """Unweighted value of every term, (k,) each, keyed by term name (for logs)."""
        return {term.name: term.evaluate(xyz, members)[0] for term in self.terms}
