"""Rotamer restraints: side-chain chis pulled towards their rotamer's central value (top-out).

For every amino acid whose side chain in the *input model* (``setup.model.xyz``) lies in the
basin of its nearest library rotamer (:mod:`varref.restraints.rotamers`: every chi within
max(3 esd, 40°) of the central value), each chi i gets

    E_i = (b_i/σ_i)² (1 − exp(−Δ'_i² / b_i²)),   Δ'_i = sign(Δ_i) max(|Δ_i| − esd_i, 0),
    Δ_i = wrap_p(χ_i − c_i),

c_i the rotamer's central value, σ_i = max(σ_rot, esd_i) with σ_rot = 10°, and b_i the
basin half-width. Within one esd of the centre there is no force (a flat bottom: chis of
real side chains scatter by about their esd, and the map decides where). Beyond it
E ≈ (Δ'/σ)², the harmonic torsion restraint of sigma σ
(the sigma of Phenix's chi restraints for rotamer outliers, mmtbx ``add_rotamer_restraints``
in geometry minimisation: 10°); beyond the basin the energy levels off at
(b/σ)², so the map can still carry a side chain into another rotamer. This is the kernel of
:mod:`varref.engine.topout_torsions` with weight 1/σ² and limit b/σ.

The restraints are fixed when the term is built, from the input model only
(``setup.model``): a problem's restraints never depend on its batch mates' starting
coordinates. When the pipeline also fits rotamer outliers (option ``rotamer_fit``, on by
default) and a map is given, the basins are found on the input model *after* that fit
(:func:`varref.refinement.rotamer_fit.fit_rotamer_outliers` of ``setup.model.xyz`` into
``setup.density``, deterministic), so that a side chain the fit moved into a rotamer is
held there — still a function of the input model and the map only. Proline is not
restrained (its chis are ring torsions the monomer library already restrains). Side chains
in no rotamer's basin (outliers) are not restrained.

Options read (``setup.options``): ``rotamer`` (True; False switches the term off),
``rotamer_sigma`` (10.0°, the smallest sigma of a chi restraint), ``rotamer_fit`` (True)
and ``interpolation``.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from varref.engine import fused_lbfgs
from varref.engine.topout_torsions import topout_torsion_value_and_gradient_batch
from varref.refinement.terms.base import RESTRAINT, TermSetup, renumber
from varref.restraints.rotamers import load_rotamer_library, side_chain_chis

log = logging.getLogger(__name__)

#: Smallest sigma (degrees) of a chi restraint; a rotamer's esd is used where it is larger.
ROTAMER_SIGMA = 10.0
#: Flat-bottom half-width of a chi restraint, in units of the rotamer's esd: a chi within
#: one esd of its rotamer's centre feels no force, so the map alone places it inside the
#: rotamer's normal spread.
FLAT_ESDS = 1.0
#: Residues whose chis are not restrained (ring torsions: monomer library).
NOT_RESTRAINED = ("PRO",)


class RotamerTerm:
    """Top-out chi restraints towards rotamer central values.

    Parameters
    ----------
    n_atoms
        Atoms of the topology.
    atoms : (n, 4) int
        Chi atom quadruples.
    ideal : (n,) float
        Rotamer central values, degrees.
    sigma : (n,) float
        Restraint sigmas, degrees (> 0).
    width : (n,) float
        Top-out half-widths b, degrees (> 0): the energy levels off at (b/σ)².
    period : (n,) int
        1, or 2 for a symmetric last chi.
    flat : (n,) float, optional
        Flat-bottom half-widths f >= 0, degrees (default 0): no force while |Δ| <= f.
    labels : (n,) str, optional
        ``"A/LEU 43 mt chi1"`` per restraint, for reports.
    """

    name = "rotamer"
    kind = RESTRAINT

    def __init__(self, n_atoms: int, atoms: np.ndarray, ideal: np.ndarray, sigma: np.ndarray,
                 width: np.ndarray, period: np.ndarray, labels: np.ndarray | None = None,
                 flat: np.ndarray | None = None) -> None:
        self.n_atoms = int(n_atoms)
        self.atoms = np.ascontiguousarray(atoms, dtype=np.int64).reshape(-1, 4)
        n = len(self.atoms)
        self.ideal = np.ascontiguousarray(ideal, dtype=np.float64)
        self.sigma = np.ascontiguousarray(sigma, dtype=np.float64)
        self.width = np.ascontiguousarray(width, dtype=np.float64)
        self.period = np.ascontiguousarray(period, dtype=np.int64)
        self.labels = (np.asarray(labels, dtype=str) if labels is not None
                       else np.full(n, "", dtype=str))
        self.flat = (np.ascontiguousarray(flat, dtype=np.float64) if flat is not None
                     else np.zeros(n))
        for what, array in (("ideal", self.ideal), ("sigma", self.sigma), ("width", self.width),
                            ("period", self.period), ("labels", self.labels), ("flat", self.flat)):
            if array.shape != (n,):
                raise ValueError(f"rotamer: {what} has shape {array.shape}, expected ({n},)")
        if n and (self.atoms.min() < 0 or self.atoms.max() >= self.n_atoms):
            raise ValueError(f"rotamer: atom index out of range [0, {self.n_atoms})")
        if n and not (np.all(np.isfinite(self.sigma)) and self.sigma.min() > 0
                      and np.all(np.isfinite(self.width)) and self.width.min() > 0):
            raise ValueError("rotamer: sigma and width must be finite and > 0")
        if n and self.period.min() < 1:
            raise ValueError("rotamer: period must be >= 1")
        if n and not (np.all(np.isfinite(self.flat)) and self.flat.min() >= 0):
            raise ValueError("rotamer: flat must be finite and >= 0")
        # the kernel's l² (1 − exp(−w Δ²/l²)) with w = 1/σ², l = b/σ: (b/σ)² (1 − e^(−Δ²/b²))
        self.weight = 1.0 / (self.sigma * self.sigma)
        self.limit = self.width / self.sigma

    def __len__(self) -> int:
        return len(self.atoms)

    def evaluate(self, xyz: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xyz = np.ascontiguousarray(xyz, dtype=np.float64)
        values = np.zeros(len(xyz))
        grad = np.zeros_like(xyz)
        topout_torsion_value_and_gradient_batch(xyz, self.atoms, self.ideal, self.weight,
                                                self.limit, self.period, self.flat, grad, values)
        return values, grad

    def fused_slot(self) -> tuple[int, tuple]:
        """Kind and kernel arguments for the fused trial minimiser (:mod:`varref.engine.fused_lbfgs`)."""
        return fused_lbfgs.TOPOUT_A, (self.atoms, self.ideal, self.weight, self.limit, self.period,
                                      self.flat)

    def subset(self, atoms: np.ndarray) -> "RotamerTerm | None":
        kept, renumbered = renumber(atoms, self.n_atoms, self.atoms)
        if not kept.any():
            return None
        return RotamerTerm(len(atoms), renumbered, self.ideal[kept], self.sigma[kept],
                           self.width[kept], self.period[kept], self.labels[kept],
                           self.flat[kept])


def rotamer_restraints(model, min_sigma: float = ROTAMER_SIGMA, library=None,
                       xyz: np.ndarray | None = None) -> RotamerTerm:
    """The rotamer term of ``model`` (module docstring).

    Parameters
    ----------
    model
        The input model.
    min_sigma
        Smallest restraint sigma, degrees.
    library
        Default: the shipped rotamer library.
    xyz
        (N, 3) coordinates that decide which side chains are in a basin (default
        ``model.xyz``).
    """
    if not (math.isfinite(min_sigma) and min_sigma > 0):
        raise ValueError(f"rotamer: sigma must be finite and > 0, got {min_sigma!r}")
    library = load_rotamer_library() if library is None else library
    chis = side_chain_chis(model, xyz, library=library)
    labels_of_residue = model.residue_labels()
    atoms, ideal, sigma, width, period, labels, flat = [], [], [], [], [], [], []
    for row in np.flatnonzero(chis.in_basin):
        resname = str(chis.resname[row])
        rotamers = library.get(resname)
        if resname in NOT_RESTRAINED or rotamers is None:
            continue
        index = int(chis.rotamer[row])
        half_width = rotamers.basin_half_width()[index]
        for k in range(int(chis.n_chi[row])):
            atoms.append(chis.atoms[row, k])
            ideal.append(rotamers.chi[index, k])
            sigma.append(max(min_sigma, rotamers.sigma[index, k]))
            width.append(half_width[k])
            flat.append(FLAT_ESDS * rotamers.sigma[index, k])
            period.append(rotamers.period[k])
            labels.append(f"{labels_of_residue[chis.residue[row]]} {rotamers.names[index]} "
                          f"chi{k + 1}")
    return RotamerTerm(model.n_atoms, np.array(atoms, dtype=np.int64).reshape(-1, 4),
                       np.array(ideal), np.array(sigma), np.array(width),
                       np.array(period, dtype=np.int64), np.array(labels, dtype=str),
                       np.array(flat))


def build(setup: TermSetup) -> RotamerTerm | None:
    """The rotamer term, or None when ``options.rotamer`` is False or no side chain is in a
    rotamer basin. Built on ``setup.model.xyz`` (the input model, which the pipeline has
    rotamer-fitted into the map when ``options.rotamer_fit``), never on ``setup.start``, so
    a problem's restraints do not depend on its batch mates."""
    options = setup.options
    if not getattr(options, "rotamer", True):
        return None
    # the pipeline has already rotamer-fitted setup.model when options.rotamer_fit is on
    term = rotamer_restraints(setup.model, float(getattr(options, "rotamer_sigma", ROTAMER_SIGMA)),
                              xyz=setup.model.xyz)
    if len(term) == 0:
        log.info("rotamer restraints: no side chain in a rotamer basin")
        return None
    n_residues = len({label.rsplit(" ", 2)[0] for label in term.labels})
    log.info("rotamer restraints: %d chis of %d side chains", len(term), n_residues)
    return term
