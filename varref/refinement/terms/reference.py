"""Reference-model torsion restraints with a top-out potential, as a term of the objective.

``T_reference = Σ_r (l/σ)² (1 − exp(−Δ_r² / l²))`` over the model's proper torsions matched
to a reference model (:mod:`varref.restraints.reference`), Δ_r = torsion − reference value:
cctbx's top-out dihedral (``top = w l²``, w = 1/σ²). Harmonic with sigma σ near the
reference, flat (→ (l/σ)² per torsion) beyond about l, so the map
can still move a side chain to another rotamer (phenix ``reference_model``; Headd et al.
2012). Defaults σ = 1°, l = 15° as Phenix. Engine: :mod:`varref.engine.topout_torsions`.

Options read (``setup.options``): ``reference_model`` — None (off), ``"start"`` (the
input model ``setup.model``, i.e. the refinement's start; for an ensemble the
unperturbed model), a :class:`~varref.model.Model` or a model file
path; ``reference_sigma`` (1.0) and ``reference_limit`` (15.0), degrees.
"""

from __future__ import annotations

import logging
import math
from os import PathLike

import numpy as np

from varref.engine import fused_lbfgs
from varref.engine.topout_torsions import topout_torsion_value_and_gradient_batch
from varref.errors import InputError
from varref.model import Model, read_model
from varref.refinement.terms.base import RESTRAINT, TermSetup, renumber
from varref.restraints.reference import reference_torsions

log = logging.getLogger(__name__)

#: Phenix reference_model defaults, degrees.
REFERENCE_SIGMA = 1.0
REFERENCE_LIMIT = 15.0


class ReferenceTerm:
    """Top-out torsion restraints towards reference values.

    Parameters
    ----------
    n_atoms
        Atoms of the topology.
    atoms : (n, 4) int
    ideal : (n,) float
        Reference torsions, degrees.
    period : (n,) int
        1, or 2 for torsions ending in one of two equivalent atoms.
    sigma, limit : float
        Degrees, finite and > 0.
    """

    name = "reference"
    kind = RESTRAINT

    def __init__(self, n_atoms: int, atoms: np.ndarray, ideal: np.ndarray, period: np.ndarray,
                 sigma: float = REFERENCE_SIGMA, limit: float = REFERENCE_LIMIT) -> None:
        for what, value in (("sigma", sigma), ("limit", limit)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"reference: {what} must be finite and > 0, got {value!r}")
        self.n_atoms = int(n_atoms)
        self.atoms = np.ascontiguousarray(atoms, dtype=np.int64).reshape(-1, 4)
        self.ideal = np.ascontiguousarray(ideal, dtype=np.float64)
        self.period = np.ascontiguousarray(period, dtype=np.int64)
        n = len(self.atoms)
        if self.ideal.shape != (n,) or self.period.shape != (n,):
            raise ValueError("reference: atoms, ideal and period disagree in length")
        if n and (self.atoms.min() < 0 or self.atoms.max() >= self.n_atoms):
            raise ValueError(f"reference: atom index out of range [0, {self.n_atoms})")
        if n and self.period.min() < 1:
            raise ValueError("reference: period must be >= 1")
        self.sigma = float(sigma)
        self.limit = float(limit)
        self.weight = np.full(n, 1.0 / (self.sigma * self.sigma))
        self.limits = np.full(n, self.limit / self.sigma)  # kernel limit: cctbx's l, over σ
        self.flat = np.zeros(n)  # plain top-out: the reference value itself is the target

    def __len__(self) -> int:
        return len(self.atoms)

    def evaluate(self, xyz: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xyz = np.ascontiguousarray(xyz, dtype=np.float64)
        values = np.zeros(len(xyz))
        grad = np.zeros_like(xyz)
        topout_torsion_value_and_gradient_batch(xyz, self.atoms, self.ideal, self.weight,
                                                self.limits, self.period, self.flat, grad,
                                                values)
        return values, grad

    def fused_slot(self) -> tuple[int, tuple]:
        """Kind and kernel arguments for the fused trial minimiser (:mod:`varref.engine.fused_lbfgs`)."""
        return fused_lbfgs.TOPOUT_A, (self.atoms, self.ideal, self.weight, self.limits, self.period,
                                      self.flat)

    def subset(self, atoms: np.ndarray) -> "ReferenceTerm | None":
        kept, renumbered = renumber(atoms, self.n_atoms, self.atoms)
        if not kept.any():
            return None
        return ReferenceTerm(len(atoms), renumbered, self.ideal[kept], self.period[kept],
                             self.sigma, self.limit)


def _reference_model(setup: TermSetup, reference: str | PathLike | Model) -> Model:
    if isinstance(reference, Model):
        return reference
    if isinstance(reference, str) and reference == "start":
        # the input model (the refinement's start; for ensembles the unperturbed model)
        return setup.model
    return read_model(reference)


def build(setup: TermSetup) -> ReferenceTerm | None:
    """The reference term, or None when ``options.reference_model`` is not set or the model
    has no torsion to restrain.

    Raises
    ------
    InputError
        The reference file cannot be read, or no torsion of the model matches it (chain,
        residue number, insertion code and atom name).
    """
    option = getattr(setup.options, "reference_model", None)
    if option is None:
        return None
    reference = _reference_model(setup, option)
    torsions = reference_torsions(setup.model, reference, setup.restraints)
    if torsions.n_candidates == 0:
        log.info("reference restraints: the model has no torsion to restrain")
        return None
    if len(torsions.atoms) == 0:
        raise InputError(reference.source or "reference model",
                         "no torsion of the model matches the reference (atoms are matched "
                         "by chain, residue number, insertion code and atom name)")
    log.info("reference restraints: %d torsions (%d without a counterpart in %s)",
             len(torsions.atoms), torsions.n_unmatched, reference.source or "the reference")
    return ReferenceTerm(setup.model.n_atoms, torsions.atoms, torsions.ideal, torsions.period,
                         float(getattr(setup.options, "reference_sigma", REFERENCE_SIGMA)),
                         float(getattr(setup.options, "reference_limit", REFERENCE_LIMIT)))
