"""The interface every term of the refinement objective implements.

The objective of a refinement of K coordinate sets (problems) of one topology is

    T_k(x_k) = w_k · Σ_data terms T(x_k) + Σ_restraint terms T(x_k),    k = 0..K-1.

A term is an object with a ``name``, a ``kind`` (``"data"`` terms are scaled by the data
weight w, ``"restraint"`` terms are not) and ``evaluate(xyz, members)`` returning the value
and gradient for the coordinate sets of the problems ``members``. A term may keep state per
problem (a non-bonded pair list, a fixed mask) indexed by the problem number, which is why
``members`` is passed: the minimiser evaluates only unfinished problems.

A term also knows how to restrict itself to a subset of atoms (``subset``), which the weight
search uses to refine short segments inside a fixed environment.

Writing a new term: one module in this package with a class following :class:`Term` and a
``build(setup) -> Term | None`` function (None when the term is switched off or has nothing to
restrain), and one line in :data:`varref.refinement.terms.REGISTRY`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - typing only
    from varref.engine.restraint_target import PackedRestraints
    from varref.maps import Map
    from varref.model import Model
    from varref.refinement.options import RefineOptions
    from varref.restraints import Restraints

DATA = "data"
RESTRAINT = "restraint"


@runtime_checkable
class Term(Protocol):
    """One additive term of the objective, for K coordinate sets of one topology."""

    name: str
    kind: str  # DATA or RESTRAINT

    def evaluate(self, xyz: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Values (k,) and gradients (k, N, 3) for full coordinates ``xyz`` (k, N, 3) of
        the problems ``members`` (k,) (indices into 0..K-1)."""
        ...

    def subset(self, atoms: np.ndarray) -> "Term | None":
        """The term restricted to ``atoms`` (sorted unique indices), renumbered
        0..len(atoms)-1; restraints with an atom outside are dropped. The returned term must
        work for any number of problems (the weight search refines K trial copies of a
        segment at once), so per-problem state is created on first use. None when nothing
        is left."""
        ...


@dataclass
class TermSetup:
    """What a term's ``build`` may read. ``density`` is the prepared (boxed, normalised)
    map or None; ``start`` the (K, N, 3) starting coordinates; ``b_iso`` (K, N) per-problem
    B-factors when they differ from ``model.b_iso`` (after B refinement)."""

    model: "Model"
    restraints: "Restraints"
    packed: "PackedRestraints"
    density: "Map | None"
    options: "RefineOptions"
    start: np.ndarray
    b_iso: np.ndarray | None = None

    @property
    def n_problems(self) -> int:
        return int(self.start.shape[0])


def renumber(atoms: np.ndarray, n_atoms: int, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a subset ``atoms`` of ``n_atoms``: which rows of ``groups`` (n, m) atom indices lie
    wholly inside it (bool mask), and those rows renumbered into the subset."""
    new_index = np.full(n_atoms, -1, dtype=np.int64)
    new_index[np.asarray(atoms, dtype=np.int64)] = np.arange(len(atoms))
    groups = np.asarray(groups, dtype=np.int64)
    if groups.size == 0:
        return np.zeros(len(groups), bool), groups.copy()
    kept = np.all(new_index[groups] >= 0, axis=1)
    return kept, new_index[groups[kept]]
