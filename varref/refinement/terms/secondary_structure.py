"""Secondary-structure restraints: hydrogen-bond distances with a top-out potential.

``T_ss = Σ_r w_r L² (1 − exp(−(d_r − d0_r)² / L²))`` over backbone N–O hydrogen bonds of
helices and sheets and over base-pair hydrogen bonds of nucleic acids (found by
:func:`varref.restraints.secondary_structure.find_secondary_structure`), evaluated by
:mod:`varref.engine.distance_topout`. Defaults: d0 = 2.9 Å, sigma = 0.05 Å (w = 400 Å⁻²),
L = 0.6 Å.

Switch (``RefineOptions.secondary_structure``): True on, False off, None automatic — on
when the map resolution is 4 Å or worse. At better than 4 Å the map resolves the helical
pitch and the β-strand separation, so H-bond restraints would only bias the model; at lower
resolution they keep secondary structure intact (Headd et al. 2012; Afonine et al. 2018).
"""

from __future__ import annotations

import numpy as np

from varref.engine import fused_lbfgs
from varref.engine.distance_topout import distance_topout_value_and_gradient_batch
from varref.refinement.terms.base import RESTRAINT, TermSetup, renumber
from varref.restraints.secondary_structure import (
    KINDS,
    LIMIT,
    SIGMA,
    SLACK,
    SecondaryStructure,
    find_secondary_structure,
)

#: Automatic mode switches the term on at this resolution (Å) and worse.
AUTO_RESOLUTION = 4.0


class SecondaryStructureTerm:
    """Top-out distance restraints on H-bonded atom pairs, for K coordinate sets.

    Parameters
    ----------
    atoms : (n, 2) int
        Restrained atom pairs (donor N, acceptor O for protein; base-pair atoms).
    ideal : (n,) float
        Target distances, Å.
    sigma : float or (n,) float
        Standard deviation near the target, Å.
    limit : float or (n,) float
        Top-out limit L, Å (≤ 0: harmonic).
    n_atoms : int
        Atoms of the topology (coordinate arrays are (k, n_atoms, 3)).
    kind : (n,) int8, optional
        Element type of each restraint (index into
        :data:`varref.restraints.secondary_structure.KINDS`), kept for reports.
    slack : float or (n,) float, optional
        Flat-bottom half-width, Å (default 0): no force while ``|d − d0| <= slack``.
    """

    name = "secondary_structure"
    kind = RESTRAINT

    def __init__(self, atoms, ideal, sigma, limit, n_atoms: int, kind=None, slack=0.0) -> None:
        self.atoms = np.ascontiguousarray(np.asarray(atoms, dtype=np.int64).reshape(-1, 2))
        n = len(self.atoms)
        self.ideal = np.ascontiguousarray(np.broadcast_to(np.asarray(ideal, np.float64), (n,)))
        self.sigma = np.ascontiguousarray(np.broadcast_to(np.asarray(sigma, np.float64), (n,)))
        self.limit = np.ascontiguousarray(np.broadcast_to(np.asarray(limit, np.float64), (n,)))
        self.slack = np.ascontiguousarray(np.broadcast_to(np.asarray(slack, np.float64), (n,)))
        self.n_atoms = int(n_atoms)
        self.element = (np.zeros(n, np.int8) if kind is None
                        else np.ascontiguousarray(np.asarray(kind, dtype=np.int8).reshape(n)))
        # the kernel does no bounds checks
        if n and (self.atoms.min() < 0 or self.atoms.max() >= self.n_atoms):
            raise ValueError(f"atom index out of range [0, {self.n_atoms})")
        if n and not (np.all(np.isfinite(self.sigma)) and np.all(self.sigma > 0)):
            raise ValueError("every sigma must be finite and > 0")
        if n and not (np.all(np.isfinite(self.slack)) and np.all(self.slack >= 0)):
            raise ValueError("every slack must be finite and >= 0")
        self.weight = 1.0 / (self.sigma * self.sigma)

    @classmethod
    def from_secondary_structure(cls, ss: SecondaryStructure, n_atoms: int,
                                 sigma: float = SIGMA, limit: float = LIMIT, slack: float = SLACK
                                 ) -> "SecondaryStructureTerm":
        """The term restraining every distance of ``ss``."""
        return cls(ss.atoms, ss.ideal, sigma, limit, n_atoms, ss.kind, slack)

    def __len__(self) -> int:
        return len(self.ideal)

    def counts(self) -> dict[str, int]:
        """Number of restraints per element type."""
        return {name: int(np.count_nonzero(self.element == k)) for k, name in enumerate(KINDS)}

    def evaluate(self, xyz: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Values (k,) and gradients (k, N, 3) for coordinates ``xyz`` (k, N, 3).

        The restraints are the same for every problem, so ``members`` is not needed.
        """
        xyz = np.ascontiguousarray(xyz, dtype=np.float64)
        if xyz.ndim != 3 or xyz.shape[1:] != (self.n_atoms, 3):
            raise ValueError(f"coordinates of shape {xyz.shape}, expected (k, {self.n_atoms}, 3)")
        values = np.zeros(xyz.shape[0])
        grad = np.zeros_like(xyz)
        distance_topout_value_and_gradient_batch(xyz, self.atoms, self.ideal, self.weight,
                                                 self.limit, self.slack, grad, values)
        return values, grad

    def fused_slot(self) -> tuple[int, tuple]:
        """Kind and kernel arguments for the fused trial minimiser (:mod:`varref.engine.fused_lbfgs`)."""
        return fused_lbfgs.DISTANCE, (self.atoms, self.ideal, self.weight, self.limit, self.slack)

    def subset(self, atoms: np.ndarray) -> "SecondaryStructureTerm | None":
        """Restraints with both atoms in ``atoms``, renumbered; None when none is left."""
        atoms = np.asarray(atoms, dtype=np.int64)
        kept, pairs = renumber(atoms, self.n_atoms, self.atoms)
        if not kept.any():
            return None
        return SecondaryStructureTerm(pairs, self.ideal[kept], self.sigma[kept],
                                      self.limit[kept], len(atoms), self.element[kept],
                                      self.slack[kept])


def enabled(option: bool | None, resolution: float) -> bool:
    """The switch rule: explicit True/False wins; None means on at ≥ 4 Å (worse)."""
    if option is None:
        return float(resolution) >= AUTO_RESOLUTION
    return bool(option)


def build(setup: TermSetup) -> SecondaryStructureTerm | None:
    """The term for ``setup.model`` when switched on and something is found, else None.

    Secondary structure is taken from the model as read (its annotation or, without one,
    its coordinates), once for all problems, so every member of an ensemble is restrained
    towards the same H-bond network.
    """
    options = setup.options
    if not enabled(getattr(options, "secondary_structure", None), options.resolution):
        return None
    ss = find_secondary_structure(setup.model)
    if len(ss) == 0:
        return None
    return SecondaryStructureTerm.from_secondary_structure(ss, setup.model.n_atoms)
