"""The Ramachandran kernel: dihedral gradient, periodic bicubic Hermite interpolation,
chain rule to atoms, batching and degenerate geometry."""

from __future__ import annotations

import numpy as np
import pytest
from gradient_check import numerical_gradient

from varref.engine.ramachandran import (
    phi_psi,
    potential_at,
    ramachandran_value_and_gradient,
    ramachandran_values_and_gradients_batch,
    residue_potentials,
)
from varref.engine.torsions import torsion_values
from varref.restraints.ramachandran import load_ramachandran_potential
from varref.validation.residues import place_atom

POTENTIAL = load_ramachandran_potential()


def build_chain(phi: np.ndarray, psi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Backbone N, CA, C of len(phi) residues with ideal geometry and the given phi/psi
    (residue 0's phi and the last psi are unused); returns xyz and the (n-2, 5) atoms of
    the inner residues."""
    n = len(phi)
    xyz = [np.zeros(3), np.array([1.458, 0.0, 0.0])]
    xyz.append(xyz[1] + 1.525 * np.array([-np.cos(np.radians(111.2)), np.sin(np.radians(111.2)), 0.0]))
    for r in range(n - 1):
        nn = place_atom(xyz[-3], xyz[-2], xyz[-1], 1.329, 116.2, psi[r])
        ca = place_atom(xyz[-2], xyz[-1], nn, 1.458, 121.7, 180.0)
        c = place_atom(xyz[-1], nn, ca, 1.525, 111.2, phi[r + 1])
        xyz += [nn, ca, c]
    atoms = np.array([[3 * r - 1, 3 * r, 3 * r + 1, 3 * r + 2, 3 * r + 3] for r in range(1, n - 1)])
    return np.array(xyz), atoms


def total(xyz, atoms, classes, weight, table=POTENTIAL.table, origin=POTENTIAL.origin,
          spacing=POTENTIAL.spacing):
    grad = np.zeros_like(xyz)
    value = ramachandran_value_and_gradient(xyz, atoms, classes, weight, table, origin, spacing, grad)
    return value, grad


def outlier_angles(rng: np.random.Generator, rama_class: int, count: int, minimum: float = 2.0):
    """(phi, psi) node angles where the shipped potential of a class exceeds ``minimum``."""
    table = POTENTIAL.table[rama_class]
    i, j = np.nonzero(table > minimum)
    pick = rng.choice(len(i), size=count, replace=False)
    return POTENTIAL.origin + POTENTIAL.spacing * np.stack([i[pick], j[pick]], axis=1).astype(float)


def test_chain_builder_sets_phi_psi():
    rng = np.random.default_rng(0)
    phi, psi = rng.uniform(-180, 180, 6), rng.uniform(-180, 180, 6)
    xyz, atoms = build_chain(phi, psi)
    angles = phi_psi(xyz, atoms)
    diff = (angles - np.stack([phi[1:-1], psi[1:-1]], axis=1) + 180.0) % 360.0 - 180.0
    assert np.max(np.abs(diff)) < 1e-6


def test_shared_dihedral_helpers_match_torsion_kernel_and_finite_differences():
    """The dihedral and its gradient shared by every dihedral term (torsions.py)."""
    from varref.engine.torsions import add_dihedral_gradient, dihedral_deg

    rng = np.random.default_rng(1)
    xyz = rng.normal(size=(4, 3)) * 1.5
    phi = dihedral_deg(xyz, 0, 1, 2, 3)
    assert phi == pytest.approx(torsion_values(xyz, np.array([[0, 1, 2, 3]]))[0], abs=1e-10)
    grad = np.zeros((4, 3))
    add_dihedral_gradient(xyz, 0, 1, 2, 3, 1.0, grad)  # slope 1 per degree: d(phi in °)/dx
    h = 1e-6
    for a in range(4):
        for d in range(3):
            plus, minus = xyz.copy(), xyz.copy()
            plus[a, d] += h
            minus[a, d] -= h
            fd = (dihedral_deg(plus, 0, 1, 2, 3) - dihedral_deg(minus, 0, 1, 2, 3)) / (2 * h)
            assert grad[a, d] == pytest.approx(fd, rel=1e-6, abs=1e-6)


def test_interpolation_reproduces_nodes_and_is_periodic():
    rng = np.random.default_rng(2)
    table = rng.uniform(0.5, 2.0, size=(2, 36, 36))
    origin, spacing = -175.0, 10.0
    for _ in range(20):
        c, i, j = rng.integers(2), rng.integers(36), rng.integers(36)
        value, _, _ = potential_at(table, origin, spacing, c, origin + i * spacing, origin + j * spacing)
        assert value == pytest.approx(table[c, i, j], abs=1e-12)
    for phi, psi in rng.uniform(-180, 180, size=(20, 2)):
        base = potential_at(table, origin, spacing, 1, phi, psi)
        shifted = potential_at(table, origin, spacing, 1, phi + 360.0, psi - 720.0)
        assert np.allclose(base, shifted, atol=1e-9)


def test_interpolant_is_c1_across_cell_edges():
    rng = np.random.default_rng(3)
    table = rng.uniform(0.0, 3.0, size=(1, 24, 24))
    origin, spacing = -172.5, 15.0
    eps = 1e-7
    for _ in range(20):
        edge = origin + spacing * rng.integers(24)  # a node line of phi
        psi = rng.uniform(-180, 180)
        below = np.array(potential_at(table, origin, spacing, 0, edge - eps, psi))
        above = np.array(potential_at(table, origin, spacing, 0, edge + eps, psi))
        assert np.allclose(below, above, atol=1e-5)
        below = np.array(potential_at(table, origin, spacing, 0, psi, edge - eps))
        above = np.array(potential_at(table, origin, spacing, 0, psi, edge + eps))
        assert np.allclose(below, above, atol=1e-5)


def test_cells_with_four_zero_corners_are_exactly_flat():
    table = np.ones((1, 20, 20))
    table[0, 5:10, 5:10] = 0.0  # cells with all corners zero: phi, psi node 5..9
    origin, spacing = -171.0, 18.0
    rng = np.random.default_rng(4)
    inside = origin + spacing * rng.uniform(5.0, 9.0, size=(50, 2))
    for phi, psi in inside:
        assert potential_at(table, origin, spacing, 0, phi, psi) == (0.0, 0.0, 0.0)
    rim = origin + spacing * rng.uniform(9.05, 9.95, size=(50, 2))  # a corner is non-zero
    assert all(potential_at(table, origin, spacing, 0, phi, psi)[0] > 0.0 for phi, psi in rim)


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_gradient_matches_finite_differences(seed):
    rng = np.random.default_rng(seed)
    n_inner = 12
    classes = np.arange(n_inner) % len(POTENTIAL.classes)  # every class twice
    angles = np.array([outlier_angles(rng, c, 1)[0] for c in classes])
    angles[::3] = rng.uniform(-180, 180, size=angles[::3].shape)  # and some anywhere
    phi = np.concatenate([[0.0], angles[:, 0], [0.0]])
    psi = np.concatenate([[0.0], angles[:, 1], [0.0]])
    xyz, atoms = build_chain(phi, psi)
    xyz += rng.normal(scale=0.05, size=xyz.shape)  # off the nodes and off ideal geometry
    weight = rng.uniform(0.5, 2.0, n_inner)
    values = residue_potentials(xyz, atoms, classes, POTENTIAL.table, POTENTIAL.origin, POTENTIAL.spacing)
    assert np.sum(values > 1.0) >= n_inner // 2  # most residues are deep outliers
    value, grad = total(xyz, atoms, classes, weight)
    assert value == pytest.approx(np.sum(weight * values), rel=1e-12)
    fd = numerical_gradient(lambda x: total(x, atoms, classes, weight)[0], xyz, step=1e-6)
    assert np.max(np.abs(grad - fd)) <= 1e-4 * np.max(np.abs(grad))


def test_batch_matches_single_models():
    rng = np.random.default_rng(8)
    xyz, atoms = build_chain(rng.uniform(-180, 180, 8), rng.uniform(-180, 180, 8))
    batch = np.stack([xyz + rng.normal(scale=0.2, size=xyz.shape) for _ in range(3)])
    classes = rng.integers(0, len(POTENTIAL.classes), len(atoms))
    weight = np.full(len(atoms), 3.0)
    grad = np.zeros_like(batch)
    values = np.zeros(3)
    ramachandran_values_and_gradients_batch(batch, atoms, classes, weight, POTENTIAL.table,
                                            POTENTIAL.origin, POTENTIAL.spacing, grad, values)
    for k in range(3):
        value, single = total(batch[k], atoms, classes, weight)
        assert values[k] == pytest.approx(value, rel=1e-12)
        assert np.allclose(grad[k], single, rtol=1e-12, atol=1e-12)
    assert np.any(values > 0)


@pytest.mark.parametrize("case", ["collinear", "coincident"])
def test_degenerate_geometry_gives_finite_values(case):
    xyz, atoms = build_chain(np.array([0.0, -60.0, 60.0]), np.array([0.0, 100.0, 0.0]))
    if case == "collinear":  # N, CA, C on a line: phi and psi undefined
        n, ca = xyz[atoms[0, 1]], xyz[atoms[0, 2]]
        xyz[atoms[0, 3]] = ca + 1.5 * (ca - n) / np.linalg.norm(ca - n)
    else:
        xyz[atoms[0, 2]] = xyz[atoms[0, 1]]
    value, grad = total(xyz, atoms, np.array([0]), np.array([1.0]))
    assert np.isfinite(value) and np.all(np.isfinite(grad))


def test_nan_coordinates_give_nan_not_garbage():
    xyz, atoms = build_chain(np.array([0.0, -60.0, 0.0]), np.array([0.0, -40.0, 0.0]))
    xyz[atoms[0, 0]] = np.nan
    value, grad = total(xyz, atoms, np.array([0]), np.array([1.0]))
    assert np.isnan(value)
    assert np.all(grad == 0.0)
