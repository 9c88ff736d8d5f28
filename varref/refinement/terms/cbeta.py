"""C-beta restraints as a term of the objective (Phenix ``c_beta_restraints``).

``T_cbeta = Σ_r (Δ_r / σ)²`` over the N–C–CA–CB and C–N–CA–CB torsions of every amino acid
with a CB (:mod:`varref.restraints.cbeta`), σ = 2.5°, evaluated with the engine's harmonic
torsion kernel (period 1) for K coordinate sets. No state per problem.
"""

from __future__ import annotations

import numpy as np

from varref.engine import fused_lbfgs
from varref.engine.torsions import torsion_value_and_gradient_batch
from varref.refinement.terms.base import RESTRAINT, TermSetup, renumber
from varref.restraints.cbeta import cbeta_restraints


class CBetaTerm:
    """Harmonic C-beta torsion restraints.

    Parameters
    ----------
    n_atoms
        Atoms of the topology.
    atoms : (n, 4) int
    ideal, sigma : (n,) float
        Degrees.
    """

    name = "cbeta"
    kind = RESTRAINT

    def __init__(self, n_atoms: int, atoms: np.ndarray, ideal: np.ndarray,
                 sigma: np.ndarray) -> None:
        self.n_atoms = int(n_atoms)
        self.atoms = np.ascontiguousarray(atoms, dtype=np.int64).reshape(-1, 4)
        self.ideal = np.ascontiguousarray(ideal, dtype=np.float64)
        self.sigma = np.ascontiguousarray(sigma, dtype=np.float64)
        if self.ideal.shape != (len(self.atoms),) or self.sigma.shape != (len(self.atoms),):
            raise ValueError("cbeta: atoms, ideal and sigma disagree in length")
        if self.atoms.size and (self.atoms.min() < 0 or self.atoms.max() >= self.n_atoms):
            raise ValueError(f"cbeta: atom index out of range [0, {self.n_atoms})")
        if not np.all(self.sigma > 0):
            raise ValueError("cbeta: every sigma must be > 0")
        self.weight = 1.0 / (self.sigma * self.sigma)
        self.period = np.ones(len(self.atoms), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.atoms)

    def evaluate(self, xyz: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xyz = np.ascontiguousarray(xyz, dtype=np.float64)
        values = np.zeros(len(xyz))
        grad = np.zeros_like(xyz)
        torsion_value_and_gradient_batch(xyz, self.atoms, self.ideal, self.weight, self.period,
                                         grad, values)
        return values, grad

    def fused_slot(self) -> tuple[int, tuple]:
        """Kind and kernel arguments for the fused trial minimiser (:mod:`varref.engine.fused_lbfgs`)."""
        return fused_lbfgs.TORSION, (self.atoms, self.ideal, self.weight, self.period)

    def subset(self, atoms: np.ndarray) -> "CBetaTerm | None":
        kept, renumbered = renumber(atoms, self.n_atoms, self.atoms)
        if not kept.any():
            return None
        return CBetaTerm(len(atoms), renumbered, self.ideal[kept], self.sigma[kept])


def build(setup: TermSetup) -> CBetaTerm | None:
    """The C-beta term, or None when ``options.cbeta`` is False or no residue qualifies."""
    if not getattr(setup.options, "cbeta", True):
        return None
    # handedness judged on the input model only, so a problem's restraints (and result) do
    # not depend on its batch mates
    restraints = cbeta_restraints(setup.model)
    if len(restraints.atoms) == 0:
        return None
    return CBetaTerm(setup.model.n_atoms, restraints.atoms, restraints.ideal, restraints.sigma)
