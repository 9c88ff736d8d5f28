"""Geometry statistics for reports (varref.engine.geometry_stats)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from varref.engine.geometry_stats import geometry_statistics
from varref.engine.restraint_target import pack_restraints, restraint_terms
from synthetic_restraints import random_restraints
from varref.restraints.arrays import (
    AngleRestraints,
    BondRestraints,
    ChiralRestraints,
    NonbondedParameters,
    PlaneRestraints,
    Restraints,
    TorsionRestraints,
)

KEYS = ("bonds", "angles", "bonds_with_h", "angles_with_h", "torsions", "chirals", "planes")


def _chain_of_bonds(delta: np.ndarray, sigma: float, is_hydrogen: np.ndarray):
    """Atoms on the x axis 1.5 Å apart, bond k from atom k to k+1 with residual delta[k]."""
    n = len(delta) + 1
    xyz = np.zeros((n, 3))
    xyz[:, 0] = 1.5 * np.arange(n)
    atoms = np.stack([np.arange(n - 1), np.arange(1, n)], axis=1).astype(np.int64)
    restraints = Restraints(
        n_atoms=n,
        bonds=BondRestraints(atoms, 1.5 - delta, np.full(n - 1, sigma)),
        angles=AngleRestraints(), torsions=TorsionRestraints(), chirals=ChiralRestraints(),
        planes=PlaneRestraints(), nonbonded=NonbondedParameters(is_hydrogen=is_hydrogen))
    return xyz, restraints


def test_statistics_of_known_residuals_and_the_hydrogen_split():
    delta = np.array([0.01, -0.03, 0.2, 0.05])
    is_hydrogen = np.array([False, False, False, False, True])  # the last bond is X-H
    xyz, restraints = _chain_of_bonds(delta, 0.02, is_hydrogen)
    stats = geometry_statistics(xyz, restraints)
    assert tuple(stats) == KEYS
    everything = stats["bonds_with_h"]
    assert everything["n"] == 4
    assert everything["rmsd"] == pytest.approx(np.sqrt(np.mean(delta**2)))
    assert everything["max_deviation"] == pytest.approx(0.2)
    assert everything["rms_z"] == pytest.approx(np.sqrt(np.mean((delta / 0.02) ** 2)))
    assert everything["n_outliers_4sigma"] == 1  # only 0.2 exceeds 4 sigma = 0.08
    heavy = stats["bonds"]
    assert heavy["n"] == 3
    assert heavy["rmsd"] == pytest.approx(np.sqrt(np.mean(delta[:3] ** 2)))
    for key in ("angles", "angles_with_h", "torsions", "chirals", "planes"):
        assert stats[key] == {"n": 0, "rmsd": 0.0, "max_deviation": 0.0, "rms_z": 0.0,
                              "n_outliers_4sigma": 0}


def test_statistics_match_numpy_and_the_target():
    xyz, restraints = random_restraints(n_atoms=40, seed=21)
    is_hydrogen = np.zeros(40, bool)
    is_hydrogen[::5] = True
    restraints = replace(restraints, nonbonded=replace(restraints.nonbonded,
                                                       is_hydrogen=is_hydrogen))
    stats = geometry_statistics(xyz, restraints)
    b = restraints.bonds
    bond_delta = np.linalg.norm(xyz[b.atoms[:, 1]] - xyz[b.atoms[:, 0]], axis=1) - b.ideal
    heavy = ~is_hydrogen[b.atoms].any(axis=1)
    assert 0 < heavy.sum() < len(b)
    assert stats["bonds"]["n"] == heavy.sum()
    assert stats["bonds"]["rmsd"] == pytest.approx(np.sqrt(np.mean(bond_delta[heavy] ** 2)),
                                                   rel=1e-12)
    assert stats["bonds_with_h"]["rmsd"] == pytest.approx(np.sqrt(np.mean(bond_delta**2)),
                                                          rel=1e-12)
    assert stats["bonds_with_h"]["n_outliers_4sigma"] == np.count_nonzero(
        np.abs(bond_delta / b.sigma) > 4)
    a = restraints.angles
    u = xyz[a.atoms[:, 0]] - xyz[a.atoms[:, 1]]
    v = xyz[a.atoms[:, 2]] - xyz[a.atoms[:, 1]]
    cos = np.sum(u * v, axis=1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)
    angle_delta = np.degrees(np.arccos(np.clip(cos, -1, 1))) - a.ideal
    assert stats["angles_with_h"]["rmsd"] == pytest.approx(np.sqrt(np.mean(angle_delta**2)),
                                                           rel=1e-9)
    assert stats["angles"]["n"] == (~is_hydrogen[a.atoms].any(axis=1)).sum()
    assert stats["planes"]["n"] == len(restraints.planes.atoms)
    # the residuals are the target's (torsions wrapped, chirals with both signs, planes as
    # distances): n * rms_z^2 is the term's value
    terms = restraint_terms(xyz, pack_restraints(restraints))
    for key, term in (("bonds_with_h", "bond"), ("angles_with_h", "angle"),
                      ("torsions", "torsion"), ("chirals", "chiral"), ("planes", "plane")):
        assert stats[key]["n"] * stats[key]["rms_z"] ** 2 == pytest.approx(terms[term],
                                                                          rel=1e-9)
        assert terms[term] > 0


def test_mismatched_inputs_are_rejected():
    xyz, restraints = random_restraints(n_atoms=12, seed=3)
    with pytest.raises(ValueError, match="coordinates"):
        geometry_statistics(xyz[:-1], restraints)
    no_flags = replace(restraints.nonbonded, is_hydrogen=np.zeros(0, bool))
    with pytest.raises(ValueError, match="is_hydrogen"):
        geometry_statistics(xyz, replace(restraints, nonbonded=no_flags))
    bad = replace(restraints.bonds, atoms=restraints.bonds.atoms.copy())
    bad.atoms[0, 1] = 12
    with pytest.raises(ValueError, match="out of range"):
        geometry_statistics(xyz, replace(restraints, bonds=bad))
