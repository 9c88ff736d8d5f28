"""Geometry statistics for reports: r.m.s. deviations, maxima and > 4 sigma outliers.

Deviations are residuals in the units of each restraint (bonds and planes Å, angles and
torsions degrees, chiral volumes Å^3), exactly the residuals the target uses (torsions
wrapped to the nearest periodic minimum, chirals with the both-signs rule).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from varref.engine.angles import angle_values
from varref.engine.bonds import bond_lengths
from varref.engine.chirals import chiral_deltas
from varref.engine.neighbours import NonbondedPairs, build_nonbonded_pairs
from varref.engine.nonbonded import nonbonded_overlaps
from varref.engine.planes import plane_deviations
from varref.engine.restraint_target import PackedRestraints
from varref.engine.torsions import torsion_deltas


@dataclass(frozen=True)
class TermStatistics:
    """Deviation statistics of one restraint kind.

    Attributes
    ----------
    count : int
        Number of residuals (for planes: plane-atom memberships).
    rmsd : float
        Root-mean-square residual (0 when count is 0).
    max_deviation : float
        Largest absolute residual.
    rms_z : float
        Root-mean-square of residual/sigma.
    n_outliers : int
        Residuals with ``|residual| > outlier_sigma * sigma``.
    """

    count: int
    rmsd: float
    max_deviation: float
    rms_z: float
    n_outliers: int


@dataclass(frozen=True)
class ContactStatistics:
    """Non-bonded contacts closer than their contact distance r0.

    ``n_overlaps``: pairs with d < r0; ``max_overlap``: largest r0 - d (Å, 0 if none);
    ``n_severe``: pairs overlapping by more than 0.4 Å (MolProbity's clash threshold,
    here against the restraint contact distances, so not a clashscore).
    """

    n_pairs_checked: int
    n_overlaps: int
    max_overlap: float
    n_severe: int


@dataclass(frozen=True)
class GeometryStatistics:
    """Per-term statistics of one model; see :func:`geometry_statistics`."""

    bonds: TermStatistics
    angles: TermStatistics
    torsions: TermStatistics
    chirals: TermStatistics
    planes: TermStatistics
    nonbonded: ContactStatistics

    def as_dict(self) -> dict[str, dict[str, float]]:
        """Nested plain-dict form (for JSON/logs)."""
        return asdict(self)

    def summary(self) -> str:
        """One line: bond/angle r.m.s.d. and outliers, as refinement logs print it."""
        b, a = self.bonds, self.angles
        return (f"bonds rmsd {b.rmsd:.4f} A (max {b.max_deviation:.3f}, {b.n_outliers} > 4sd); "
                f"angles rmsd {a.rmsd:.3f} deg (max {a.max_deviation:.2f}, "
                f"{a.n_outliers} > 4sd); chirals rmsd {self.chirals.rmsd:.3f}; "
                f"planarity rmsd {self.planes.rmsd:.4f} A; "
                f"torsions rmsd {self.torsions.rmsd:.2f} deg; "
                f"non-bonded overlaps {self.nonbonded.n_overlaps}")


def term_statistics(delta: np.ndarray, sigma: np.ndarray, outlier_sigma: float = 4.0
                    ) -> TermStatistics:
    """Statistics of residuals ``delta`` with per-residual ``sigma`` (same shape)."""
    delta = np.asarray(delta, dtype=np.float64)
    if delta.size == 0:
        return TermStatistics(0, 0.0, 0.0, 0.0, 0)
    z = delta / sigma
    return TermStatistics(
        count=int(delta.size),
        rmsd=float(np.sqrt(np.mean(delta * delta))),
        max_deviation=float(np.max(np.abs(delta))),
        rms_z=float(np.sqrt(np.mean(z * z))),
        n_outliers=int(np.count_nonzero(np.abs(z) > outlier_sigma)),
    )


def restraint_deltas(xyz: np.ndarray, packed: PackedRestraints) -> dict[str, np.ndarray]:
    """Residuals of every covalent restraint: ``{"bonds", "angles", "torsions", "chirals",
    "planes"}`` -> 1-D arrays (planes: one distance per plane atom, aligned with
    ``packed.plane_atoms``)."""
    xyz = np.ascontiguousarray(xyz, dtype=np.float64)
    p = packed
    return {
        "bonds": bond_lengths(xyz, p.bond_atoms) - p.bond_ideal,
        "angles": angle_values(xyz, p.angle_atoms) - p.angle_ideal,
        "torsions": torsion_deltas(xyz, p.torsion_atoms, p.torsion_ideal, p.torsion_period),
        "chirals": chiral_deltas(xyz, p.chiral_atoms, p.chiral_ideal, p.chiral_both_signs),
        "planes": plane_deviations(xyz, p.plane_atoms, p.plane_offsets),
    }


def geometry_statistics(
    xyz: np.ndarray,
    packed: PackedRestraints,
    nonbonded_pairs: NonbondedPairs | None = None,
    outlier_sigma: float = 4.0,
) -> GeometryStatistics:
    """Geometry statistics of one model.

    Parameters
    ----------
    xyz : (N, 3) array
    packed : PackedRestraints
    nonbonded_pairs : NonbondedPairs, optional
        A pair list valid for ``xyz``; built afresh (no buffer) when omitted.
    outlier_sigma : float
        Outlier threshold in sigmas (default 4).

    Returns
    -------
    GeometryStatistics
    """
    xyz = np.ascontiguousarray(xyz, dtype=np.float64)
    p = packed
    deltas = restraint_deltas(xyz, p)
    plane_sizes = np.diff(p.plane_offsets)
    plane_sigma = np.repeat(p.plane_sigma, plane_sizes)
    stats = {
        "bonds": term_statistics(deltas["bonds"], p.bond_sigma, outlier_sigma),
        "angles": term_statistics(deltas["angles"], p.angle_sigma, outlier_sigma),
        "torsions": term_statistics(deltas["torsions"], p.torsion_sigma, outlier_sigma),
        "chirals": term_statistics(deltas["chirals"], p.chiral_sigma, outlier_sigma),
        "planes": term_statistics(deltas["planes"], plane_sigma, outlier_sigma),
    }
    if nonbonded_pairs is None:
        no_buffer = replace(p.nonbonded_settings, buffer=0.0)
        nonbonded_pairs = build_nonbonded_pairs(xyz, p.nonbonded, no_buffer)
    overlap = nonbonded_overlaps(xyz, nonbonded_pairs.pairs, nonbonded_pairs.contact)
    positive = overlap[overlap > 0.0]
    contacts = ContactStatistics(
        n_pairs_checked=int(len(overlap)),
        n_overlaps=int(positive.size),
        max_overlap=float(positive.max()) if positive.size else 0.0,
        n_severe=int(np.count_nonzero(positive > 0.4)),
    )
    return GeometryStatistics(nonbonded=contacts, **stats)
