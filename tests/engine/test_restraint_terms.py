"""Behaviour of individual restraint terms: conventions, periodicity, signs, planes,
the non-bonded function and contact-distance rule, packing checks."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from gradient_check import numerical_gradient

from varref.engine.angles import angle_value_and_gradient, angle_values
from varref.engine.bonds import bond_value_and_gradient
from varref.engine.chirals import chiral_value_and_gradient, chiral_volumes
from varref.engine.nonbonded import (
    HB_ACCEPTOR,
    HB_BOTH,
    HB_DONOR,
    HB_HYDROGEN,
    HB_NEITHER,
    NonbondedSettings,
    contact_distance,
    effective_radii,
    nonbonded_value_and_gradient,
)
from varref.engine.planes import plane_deviations, plane_value_and_gradient
from varref.engine.restraint_target import pack_restraints
from synthetic_restraints import random_restraints
from varref.engine.torsions import (
    torsion_deltas,
    torsion_value_and_gradient,
    torsion_values,
    wrap_periodic_deg,
)

I64 = np.int64


def _dihedral_points(phi_deg: float) -> np.ndarray:
    """Four points whose IUPAC dihedral is phi (looking along j->k = +z)."""
    phi = math.radians(phi_deg)
    return np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.5],
                     [math.cos(phi), math.sin(phi), 1.5]])


def _torsion_value(xyz, ideal, period, sigma=10.0):
    return torsion_value_and_gradient(
        xyz, np.array([[0, 1, 2, 3]], I64), np.array([ideal]), np.array([1 / sigma**2]),
        np.array([period], I64), np.zeros_like(xyz))


@pytest.mark.parametrize("phi", [0.0, 60.0, 90.0, -90.0, 179.0, -120.0])
def test_torsion_value_follows_iupac_sign(phi):
    measured = torsion_values(_dihedral_points(phi), np.array([[0, 1, 2, 3]], I64))[0]
    assert measured == pytest.approx(phi, abs=1e-9)


@pytest.mark.parametrize("period", [1, 2, 3, 6])
def test_torsion_is_invariant_under_period_shifts_of_ideal(period):
    xyz = _dihedral_points(37.0)
    base = _torsion_value(xyz, ideal=-100.0, period=period)
    for m in (-2, -1, 1, 2, 5):
        shifted = _torsion_value(xyz, ideal=-100.0 + m * 360.0 / period, period=period)
        assert shifted == pytest.approx(base, rel=1e-12)


@pytest.mark.parametrize("period", [1, 2, 3])
def test_torsion_residual_goes_to_nearest_periodic_minimum(period):
    xyz = _dihedral_points(170.0)
    # ideal -175: nearest minimum is -175 + 360 = 185 -> residual -15 (period 1)
    delta = torsion_deltas(xyz, np.array([[0, 1, 2, 3]], I64), np.array([-175.0]),
                           np.array([period], I64))[0]
    span = 360.0 / period
    assert -span / 2 <= delta < span / 2
    assert delta == pytest.approx(wrap_periodic_deg(170.0 + 175.0, period), abs=1e-9)
    if period == 1:
        assert delta == pytest.approx(-15.0, abs=1e-9)


def test_wrap_periodic_range():
    for period in (1, 2, 3, 6):
        for delta in np.linspace(-1000, 1000, 101):
            w = wrap_periodic_deg(delta, period)
            assert -180.0 / period - 1e-12 <= w < 180.0 / period + 1e-12
            assert (delta - w) / (360.0 / period) == pytest.approx(
                round((delta - w) / (360.0 / period)), abs=1e-9)


def test_torsion_period_zero_is_packed_as_one():
    xyz, r = random_restraints(n_atoms=12, seed=1)
    t = replace(r.torsions, period=np.zeros(len(r.torsions), np.int64))
    packed = pack_restraints(replace(r, torsions=t))
    assert np.all(packed.kernel_arrays.torsion_period == 1)


def test_angle_at_middle_atom_and_gradient_direction():
    xyz = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    atoms = np.array([[0, 1, 2]], I64)
    assert angle_values(xyz, atoms)[0] == pytest.approx(90.0)
    grad = np.zeros_like(xyz)
    value = angle_value_and_gradient(xyz, atoms, np.array([100.0]), np.array([1.0]), grad)
    assert value == pytest.approx(100.0)
    # opening the angle lowers T: moving atom 0 away from atom 2 (-y) decreases T
    assert grad[0, 1] > 0.0
    np.testing.assert_allclose(grad.sum(axis=0), 0.0, atol=1e-12)


def test_bond_value_units():
    xyz = np.array([[0.0, 0.0, 0.0], [1.6, 0.0, 0.0]])
    grad = np.zeros_like(xyz)
    value = bond_value_and_gradient(xyz, np.array([[0, 1]], I64), np.array([1.5]),
                                    np.array([1 / 0.02**2]), grad)
    assert value == pytest.approx((0.1 / 0.02) ** 2)
    assert grad[1, 0] == pytest.approx(2 * 0.1 / 0.02**2)
    assert grad[0, 0] == pytest.approx(-grad[1, 0])


def _tetrahedron() -> np.ndarray:
    return np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def _chiral(xyz, ideal, both):
    grad = np.zeros_like(xyz)
    value = chiral_value_and_gradient(xyz, np.array([[0, 1, 2, 3]], I64), np.array([ideal]),
                                      np.array([1.0]), np.array([both]), grad)
    return value, grad


def test_chiral_volume_sign_convention():
    xyz = _tetrahedron()
    assert chiral_volumes(xyz, np.array([[0, 1, 2, 3]], I64))[0] == pytest.approx(1.0)
    mirror = xyz * np.array([1.0, 1.0, -1.0])
    assert chiral_volumes(mirror, np.array([[0, 1, 2, 3]], I64))[0] == pytest.approx(-1.0)


def test_chiral_sign_handling():
    xyz = _tetrahedron()
    mirror = xyz * np.array([1.0, 1.0, -1.0])
    assert _chiral(xyz, 1.0, False)[0] == pytest.approx(0.0)
    assert _chiral(mirror, 1.0, False)[0] == pytest.approx(4.0)  # (-1 - 1)^2
    assert _chiral(xyz, -1.0, False)[0] == pytest.approx(4.0)
    # both signs: either hand is ideal, whatever the sign of ideal
    for coords in (xyz, mirror):
        for ideal in (1.0, -1.0):
            value, grad = _chiral(coords, ideal, True)
            assert value == pytest.approx(0.0)
            np.testing.assert_allclose(grad, 0.0, atol=1e-12)
    # both signs, too small: the gradient grows |V| in the model's own hand
    for coords in (xyz, mirror):
        value, grad = _chiral(coords, 1.5, True)
        assert value == pytest.approx(0.25)
        numeric = numerical_gradient(lambda x: _chiral(x, 1.5, True)[0], coords)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


def _plane_points(n: int, seed: int, offplane: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    uv = rng.uniform(-2.0, 2.0, size=(n, 2))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    points = uv @ q[:, :2].T + rng.normal(size=3) * 5.0
    return points + offplane * rng.normal(size=(n, 1)) * q[:, 2]


@pytest.mark.parametrize("n", [4, 6, 10])
def test_coplanar_atoms_have_zero_plane_value_and_gradient(n):
    xyz = _plane_points(n, seed=n)
    atoms = np.arange(n, dtype=I64)
    grad = np.zeros_like(xyz)
    value = plane_value_and_gradient(xyz, atoms, np.array([0, n], I64),
                                     np.array([1 / 0.02**2]), grad)
    assert value == pytest.approx(0.0, abs=1e-18)
    np.testing.assert_allclose(grad, 0.0, atol=1e-8)


def test_plane_value_is_weighted_smallest_eigenvalue():
    xyz = _plane_points(7, seed=3, offplane=0.1)
    atoms = np.arange(7, dtype=I64)
    value = plane_value_and_gradient(xyz, atoms, np.array([0, 7], I64), np.array([2500.0]),
                                     np.zeros_like(xyz))
    centred = xyz - xyz.mean(axis=0)
    smallest = np.linalg.eigvalsh(centred.T @ centred)[0]
    assert value == pytest.approx(2500.0 * smallest, rel=1e-10)
    deviations = plane_deviations(xyz, atoms, np.array([0, 7], I64))
    assert np.sum(deviations**2) == pytest.approx(smallest, rel=1e-10)
    assert np.sum(deviations) == pytest.approx(0.0, abs=1e-12)


def test_plane_gradient_with_nearly_degenerate_in_plane_spread():
    # a square: the two in-plane eigenvalues are equal; the normal is still well defined
    xyz = np.array([[0, 0, 0.05], [1, 0, -0.05], [1, 1, 0.05], [0, 1, -0.05]], float)
    atoms = np.arange(4, dtype=I64)

    def value(x):
        return plane_value_and_gradient(x, atoms, np.array([0, 4], I64), np.array([1.0]),
                                        np.zeros_like(x))

    grad = np.zeros_like(xyz)
    plane_value_and_gradient(xyz, atoms, np.array([0, 4], I64), np.array([1.0]), grad)
    np.testing.assert_allclose(grad, numerical_gradient(value, xyz), rtol=1e-6, atol=1e-9)


def test_prolsq_repulsion_matches_cctbx_reference():
    # cctbx geometry_restraints regression: vdw_distance 5, c_rep 16
    xyz = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]])
    grad = np.zeros_like(xyz)
    value = nonbonded_value_and_gradient(xyz, np.array([[0, 1]], I64), np.array([5.0]), 16.0,
                                         grad)
    assert value == pytest.approx(40.1158130612, rel=1e-9)
    np.testing.assert_allclose(grad[0], [34.081026602378813, 68.162053204757626,
                                         102.24307980713644], rtol=1e-9)
    np.testing.assert_allclose(grad[1], -grad[0])


def test_repulsion_is_zero_beyond_contact_distance():
    xyz = np.array([[0.0, 0.0, 0.0], [3.0001, 0.0, 0.0]])
    grad = np.zeros_like(xyz)
    assert nonbonded_value_and_gradient(xyz, np.array([[0, 1]], I64), np.array([3.0]), 100.0,
                                        grad) == 0.0
    assert not grad.any()


def _contact(ri, rj, ti, tj, is_14, s=NonbondedSettings()):
    return contact_distance(ri, rj, ti, tj, is_14, s.k_rep, s.factor_1_4,
                            s.shrink_donor_acceptor, s.minimum_distance, s.default_distance)


def test_contact_distance_rule():
    assert _contact(1.7, 1.7, HB_NEITHER, HB_NEITHER, False) == pytest.approx(3.4)
    assert _contact(1.7, 1.7, HB_NEITHER, HB_NEITHER, True) == pytest.approx(0.8 * 3.4)
    # H-bonding pairs shrink by 0.6 A (cctbx const_shrink_donor_acceptor)
    for ti, tj in [(HB_DONOR, HB_ACCEPTOR), (HB_ACCEPTOR, HB_DONOR), (HB_DONOR, HB_BOTH),
                   (HB_BOTH, HB_BOTH), (HB_ACCEPTOR, HB_BOTH), (HB_ACCEPTOR, HB_HYDROGEN),
                   (HB_HYDROGEN, HB_BOTH)]:
        assert _contact(1.55, 1.52, ti, tj, False) == pytest.approx(3.07 - 0.6)
    for ti, tj in [(HB_DONOR, HB_DONOR), (HB_ACCEPTOR, HB_ACCEPTOR), (HB_NEITHER, HB_DONOR),
                   (HB_HYDROGEN, HB_HYDROGEN), (HB_DONOR, HB_HYDROGEN)]:
        assert _contact(1.55, 1.52, ti, tj, False) == pytest.approx(3.07)
    # unknown radius -> default distance; floor at the minimum distance
    assert _contact(np.nan, 1.7, HB_NEITHER, HB_NEITHER, False) == pytest.approx(1.0)
    assert _contact(0.3, 0.3, HB_NEITHER, HB_NEITHER, True) == pytest.approx(1.0)
    assert _contact(1.7, 1.7, HB_NEITHER, HB_NEITHER, False,
                    NonbondedSettings(k_rep=0.9)) == pytest.approx(0.9 * 3.4)


def test_free_ions_use_ionic_radius():
    vdw = np.array([1.39, 1.52, 1.52, 1.7])
    ion = np.array([0.74, 1.28, 1.28, np.nan])
    hb = np.array([HB_NEITHER, HB_BOTH, HB_ACCEPTOR, HB_NEITHER])
    bonded = np.array([False, False, True, False])
    radius = effective_radii(vdw, ion, hb, np.zeros(4, bool), bonded)
    # Zn without bonds -> ionic; water O (both) keeps vdW; bonded O keeps vdW; no ion radius
    np.testing.assert_allclose(radius, [0.74, 1.52, 1.52, 1.7])


def test_packing_validates_indices_and_sigmas():
    xyz, r = random_restraints(n_atoms=12, seed=2)
    bad_index = replace(r.bonds, atoms=r.bonds.atoms.copy())
    bad_index.atoms[0, 0] = 12
    with pytest.raises(ValueError, match="out of range"):
        pack_restraints(replace(r, bonds=bad_index))
    bad_sigma = replace(r.angles, sigma=np.where(np.arange(len(r.angles)) == 0, 0.0,
                                                 r.angles.sigma))
    with pytest.raises(ValueError, match="sigma"):
        pack_restraints(replace(r, angles=bad_sigma))
    arrays = pack_restraints(r).kernel_arrays
    np.testing.assert_allclose(arrays.bond_weight, 1 / r.bonds.sigma**2)
    assert arrays.bond_atoms.flags.c_contiguous and arrays.bond_atoms.dtype == np.int64


def test_special_pairs_table_prefers_exclusion():
    xyz, r = random_restraints(n_atoms=12, seed=4)
    overlap = r.nonbonded.excluded_pairs[:1]
    nb = replace(r.nonbonded, pairs_14=np.concatenate([r.nonbonded.pairs_14, overlap]))
    packed = pack_restraints(replace(r, nonbonded=nb))
    t = packed.nonbonded
    i, j = overlap[0]
    row = slice(t.partner_offsets[i], t.partner_offsets[i + 1])
    kinds = t.partner_kind[row][t.partners[row] == j]
    assert list(kinds) == [1]
