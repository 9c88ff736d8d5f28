"""Ramachandran restraints: ``T_rama = w Σ_r V_c(r)(phi_r, psi_r)``.

V_c is the Top8000-derived potential of the residue's MolProbity class
(:mod:`varref.restraints.ramachandran`, equation in ``docs/methods-restraints.md``): zero in
the favoured region, ``V = 2(sqrt(1 + (D/δ)^2) - 1)`` outside it, with D the cheapest-path
distance (degrees, outlier-region degrees counting double) to the favoured region and
δ = 3°. Near the favoured edge a residue therefore counts like a torsion restraint
``w (D/δ)^2`` — with w = 10 an effective sigma of δ/sqrt(w) ≈ 1° — so the map cannot push
residues far over the edge; far away the pull is constant (``w dV/dD -> 2w/δ`` per degree,
twice that inside outlier regions) instead of growing with the distance as a harmonic
restraint's would.

:data:`RAMACHANDRAN_WEIGHT` = 10 comes from a weight ladder (3, 5, 10, 30) in the full
refinement pipeline: on the EMD-5778 TRPV1 map at 3.4 Å it restores the deposited model's
Ramachandran statistics (favoured 80.1 % → 96.7 %, outliers 2.9 % → 0; deposited 95.8 %)
with CC_mask unchanged (0.765) and bond/angle r.m.s.d. within the weight search's targets;
w = 3-5 leaves 91-92 % favoured, w = 30 starts to cost map fit and, on simulated maps,
accuracy. Details in ``docs/methods-restraints.md``.
"""

from __future__ import annotations

import numpy as np

from varref.engine import fused_lbfgs
from varref.engine.ramachandran import ramachandran_values_and_gradients_batch
from varref.refinement.terms.base import RESTRAINT, TermSetup, renumber
from varref.restraints.ramachandran import (
    RamachandranPotential,
    find_ramachandran_residues,
    load_ramachandran_potential,
)

#: Weight of every residue's V in the restraint sum, which adds to the geometry restraints'
#: sum of (residual/sigma)^2. Overridden by ``options.ramachandran_weight``.
RAMACHANDRAN_WEIGHT = 10.0


class RamachandranTerm:
    """Ramachandran restraints of the residues ``atoms`` (n, 5) for K coordinate sets.

    Parameters
    ----------
    atoms : (n, 5) int
        ``(C_prev, N, CA, C, N_next)`` per residue.
    classes : (n,) int
        Row of ``potential.table`` per residue.
    weights : (n,) float
        Weight of each residue's V.
    potential : RamachandranPotential
    n_atoms : int
        Atoms of the topology (for :meth:`subset`).
    """

    name = "ramachandran"
    kind = RESTRAINT

    def __init__(self, atoms: np.ndarray, classes: np.ndarray, weights: np.ndarray,
                 potential: RamachandranPotential, n_atoms: int) -> None:
        self.atoms = np.ascontiguousarray(atoms, dtype=np.int64).reshape(-1, 5)
        self.classes = np.ascontiguousarray(classes, dtype=np.int64)
        self.weights = np.ascontiguousarray(weights, dtype=np.float64)
        if not (len(self.classes) == len(self.weights) == len(self.atoms)):
            raise ValueError("atoms, classes and weights must have one row per residue")
        if self.atoms.size and (self.atoms.min() < 0 or self.atoms.max() >= n_atoms):
            raise ValueError(f"atom index out of range [0, {n_atoms})")  # the kernel does no bounds checks
        if self.classes.size and (self.classes.min() < 0 or self.classes.max() >= len(potential.table)):
            raise ValueError("class index out of range of the potential table")
        self.potential = potential
        self.n_atoms = int(n_atoms)

    def __len__(self) -> int:
        return len(self.atoms)

    def evaluate(self, xyz: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xyz = np.ascontiguousarray(xyz, dtype=np.float64)
        values = np.zeros(xyz.shape[0])
        gradient = np.zeros_like(xyz)
        p = self.potential
        ramachandran_values_and_gradients_batch(xyz, self.atoms, self.classes, self.weights,
                                                p.table, p.origin, p.spacing, gradient, values)
        return values, gradient

    def fused_slot(self) -> tuple[int, tuple]:
        """Kind and kernel arguments for the fused trial minimiser (:mod:`varref.engine.fused_lbfgs`)."""
        p = self.potential
        return fused_lbfgs.RAMACHANDRAN, (self.atoms, self.classes, self.weights, p.table,
                                          float(p.origin), float(p.spacing))

    def subset(self, atoms: np.ndarray) -> "RamachandranTerm | None":
        kept, renumbered = renumber(atoms, self.n_atoms, self.atoms)
        if not kept.any():
            return None
        return RamachandranTerm(renumbered, self.classes[kept], self.weights[kept],
                                self.potential, len(atoms))


def build(setup: TermSetup) -> RamachandranTerm | None:
    """The term for ``setup.model`` (classes from the model's own coordinates), or None when
    ``options.ramachandran`` is False or no residue has both phi and psi."""
    options = setup.options
    if not getattr(options, "ramachandran", True):
        return None
    residues = find_ramachandran_residues(setup.model)
    if len(residues) == 0:
        return None
    weight = getattr(options, "ramachandran_weight", None)
    weight = RAMACHANDRAN_WEIGHT if weight is None else float(weight)
    potential = load_ramachandran_potential()
    return RamachandranTerm(residues.atoms, potential.class_index(residues.class_name),
                            np.full(len(residues), weight), potential, setup.model.n_atoms)
