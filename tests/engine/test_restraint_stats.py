"""Geometry statistics for reporting."""

from __future__ import annotations

import numpy as np
import pytest

from varref.engine.geometry_stats import geometry_statistics, restraint_deltas, term_statistics
from varref.engine.restraint_target import pack_restraints
from varref.engine.synthetic import random_restraints


def test_term_statistics_values():
    delta = np.array([0.01, -0.03, 0.2, 0.0])
    sigma = np.array([0.02, 0.02, 0.02, 0.02])
    stats = term_statistics(delta, sigma)
    assert stats.count == 4
    assert stats.rmsd == pytest.approx(np.sqrt(np.mean(delta**2)))
    assert stats.max_deviation == pytest.approx(0.2)
    assert stats.n_outliers == 1  # only 0.2 exceeds 4 sigma = 0.08
    assert stats.rms_z == pytest.approx(np.sqrt(np.mean((delta / sigma) ** 2)))
    empty = term_statistics(np.zeros(0), np.zeros(0))
    assert empty.count == 0 and empty.rmsd == 0.0


def test_statistics_match_numpy_references():
    xyz, restraints = random_restraints(n_atoms=40, seed=21)
    packed = pack_restraints(restraints)
    stats = geometry_statistics(xyz, packed)
    b = restraints.bonds
    bond_delta = np.linalg.norm(xyz[b.atoms[:, 1]] - xyz[b.atoms[:, 0]], axis=1) - b.ideal
    assert stats.bonds.rmsd == pytest.approx(np.sqrt(np.mean(bond_delta**2)), rel=1e-12)
    assert stats.bonds.n_outliers == np.count_nonzero(np.abs(bond_delta / b.sigma) > 4)
    a = restraints.angles
    u = xyz[a.atoms[:, 0]] - xyz[a.atoms[:, 1]]
    v = xyz[a.atoms[:, 2]] - xyz[a.atoms[:, 1]]
    cos = np.sum(u * v, axis=1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)
    angle_delta = np.degrees(np.arccos(np.clip(cos, -1, 1))) - a.ideal
    assert stats.angles.rmsd == pytest.approx(np.sqrt(np.mean(angle_delta**2)), rel=1e-9)
    deltas = restraint_deltas(xyz, packed)
    assert np.all(np.abs(deltas["torsions"]) <= 180.0 / packed.torsion_period)
    assert stats.planes.count == len(packed.plane_atoms)
    assert stats.nonbonded.n_overlaps > 0
    assert stats.nonbonded.max_overlap > 0
    summary = stats.summary()
    assert "bonds rmsd" in summary and "angles rmsd" in summary
    assert stats.as_dict()["bonds"]["count"] == len(b)
