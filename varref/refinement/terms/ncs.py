"""Torsion NCS restraints between automatically found copies, as a term of the objective.

``T_ncs = Σ_r (1/n_r) Σ_{i<j} (l/σ)² (1 − exp(−d_ij² / l²))`` over the torsions r shared by
n_r ≥ 2 copies of an NCS group, d_ij the wrapped difference of the torsion between copies
i and j (:mod:`varref.engine.ncs_torsions` with weight w = 1/σ² and kernel limit l/σ). This is
cctbx's top-out dihedral (``top = w l²``, ``top (1 − exp(−w d²/top))``), so σ and l mean what
they mean in Phenix: near agreement every copy is restrained to the copies' mean with sigma
σ; the force peaks at |d| = l/√2 and copies that differ by much more than l (another
rotamer, a hinge in the backbone) are left alone. Local: only torsions are
compared, so the copies' relative placement and domain motions are free.

Groups and torsions (:mod:`varref.restraints.ncs`) are found once, in the input model
``setup.model`` — never in the batch of starting coordinates — so every problem of an
ensemble or series refines with the same restraints.

Options read (``setup.options``): ``ncs`` (True; False switches the term off),
``ncs_sigma`` (2.5) and ``ncs_limit`` (15.0), degrees — Phenix's torsion-NCS defaults.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from varref.engine import fused_lbfgs
from varref.engine.ncs_torsions import ncs_torsion_value_and_gradient_batch
from varref.refinement.terms.base import RESTRAINT, TermSetup, renumber
from varref.restraints.ncs import find_ncs, ncs_torsions

log = logging.getLogger(__name__)

#: Phenix torsion-NCS defaults (mmtbx ``torsion_ncs``), degrees.
NCS_SIGMA = 2.5
NCS_LIMIT = 15.0


class NcsTerm:
    """Pairwise top-out restraints between the copies of NCS-related torsions.

    Parameters
    ----------
    n_atoms
        Atoms of the topology.
    atoms : (M, 4) int
        Dihedral atoms of every copy of every restraint (CSR rows).
    offsets : (n + 1,) int
        Restraint r has the copies ``atoms[offsets[r]:offsets[r+1]]`` (at least two).
    period : (n,) int
        1, or 2 for torsions ending in one of two equivalent atoms.
    sigma, limit : float
        Degrees, finite and > 0.
    """

    name = "ncs"
    kind = RESTRAINT

    def __init__(self, n_atoms: int, atoms: np.ndarray, offsets: np.ndarray,
                 period: np.ndarray, sigma: float = NCS_SIGMA, limit: float = NCS_LIMIT) -> None:
        for what, value in (("sigma", sigma), ("limit", limit)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"ncs: {what} must be finite and > 0, got {value!r}")
        self.n_atoms = int(n_atoms)
        self.atoms = np.ascontiguousarray(atoms, dtype=np.int64).reshape(-1, 4)
        self.offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        self.period = np.ascontiguousarray(period, dtype=np.int64)
        n = len(self.period)
        if self.offsets.shape != (n + 1,) or self.offsets[0] != 0 \
                or self.offsets[-1] != len(self.atoms) or np.any(np.diff(self.offsets) < 2):
            raise ValueError("ncs: offsets must run from 0 to len(atoms) with >= 2 copies "
                             "per restraint")
        if len(self.atoms) and (self.atoms.min() < 0 or self.atoms.max() >= self.n_atoms):
            raise ValueError(f"ncs: atom index out of range [0, {self.n_atoms})")
        if n and self.period.min() < 1:
            raise ValueError("ncs: period must be >= 1")
        self.sigma = float(sigma)
        self.limit = float(limit)
        self.weight = np.full(n, 1.0 / (self.sigma * self.sigma))
        # the kernel's l_k² (1 − exp(−w d²/l_k²)) with l_k = l/σ is cctbx's w l² (1 − e^(−d²/l²))
        self.limits = np.full(n, self.limit / self.sigma)

    def __len__(self) -> int:
        return len(self.period)

    def evaluate(self, xyz: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xyz = np.ascontiguousarray(xyz, dtype=np.float64)
        values = np.zeros(len(xyz))
        grad = np.zeros_like(xyz)
        ncs_torsion_value_and_gradient_batch(xyz, self.atoms, self.offsets, self.period,
                                             self.weight, self.limits, grad, values)
        return values, grad

    def fused_slot(self) -> tuple[int, tuple]:
        """Kind and kernel arguments for the fused trial minimiser (:mod:`varref.engine.fused_lbfgs`)."""
        return fused_lbfgs.NCS, (self.atoms, self.offsets, self.period, self.weight, self.limits)

    def subset(self, atoms: np.ndarray) -> "NcsTerm | None":
        inside, renumbered = renumber(atoms, self.n_atoms, self.atoms)
        # a restraint is kept only when every atom of every copy is in the subset
        counts = np.diff(self.offsets)
        kept = np.add.reduceat(inside.astype(np.int64), self.offsets[:-1]) == counts \
            if len(counts) else np.zeros(0, bool)
        if not kept.any():
            return None
        # renumbered holds every inside copy; keep those of wholly inside restraints
        rows = renumbered[np.repeat(kept, counts)[inside]]
        offsets = np.concatenate([[0], np.cumsum(counts[kept])])
        return NcsTerm(len(atoms), rows, offsets, self.period[kept], self.sigma, self.limit)


def build(setup: TermSetup) -> NcsTerm | None:
    """The NCS term, or None when ``options.ncs`` is False or the input model has no NCS
    copies sharing a torsion."""
    if not getattr(setup.options, "ncs", True):
        return None
    model = setup.model
    groups = find_ncs(model)
    if not groups:
        log.info("ncs: no NCS copies found")
        return None
    for g, group in enumerate(groups, start=1):
        first = group.copies[0]
        log.info("ncs group %d: %d copies of chain %s (%d residues)", g, len(group),
                 first.chain, int((first.residues >= 0).sum()))
        for copy in group.copies[1:]:
            log.info("  chain %s: %d residues aligned, identity %.1f %%, Cα r.m.s.d. %.2f Å "
                     "over %d (%.2f Å over all)", copy.chain, copy.n_aligned,
                     100.0 * copy.identity, copy.rmsd, copy.n_core, copy.rmsd_all)
    torsions = ncs_torsions(model, groups, setup.restraints)
    if len(torsions.period) == 0:
        log.info("ncs: the copies share no torsion")
        return None
    log.info("ncs restraints: %d torsions in %d copies (%d torsions without a counterpart)",
             len(torsions.period), len(torsions.atoms), torsions.n_single)
    return NcsTerm(model.n_atoms, torsions.atoms, torsions.offsets, torsions.period,
                   float(getattr(setup.options, "ncs_sigma", NCS_SIGMA)),
                   float(getattr(setup.options, "ncs_limit", NCS_LIMIT)))
