"""B-factor kernels: dCC/dB, the bonded-B restraint and group sums against finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from varref.engine.adp import (
    b_gradient_from_map_gradient,
    b_similarity_value_gradient,
    cc_b_value_gradient,
    correlation_data,
    sum_by_group,
)
from varref.engine.correlation import cc_mask, mask_radii, molecular_mask
from varref.engine.model_map import (
    CORRELATION_CUTOFF,
    atom_gaussians,
    cutoff_radii,
    merged_coefficients,
    model_map,
    resolution_blur,
    scattering_coefficients,
)
from varref.example_data import example_helix

STEP = 1e-4  # Å^2; T is smooth in B, central differences are accurate to ~1e-9 relative


@pytest.fixture(scope="module")
def problem():
    """A 10-residue helix with a few atoms turned into S, P and Fe, B from 5 to 200 Å^2 and
    partial occupancies; target simulated with other B plus noise; anisotropic voxels."""
    model = example_helix(10)
    xyz = model.xyz.copy()
    elements = model.element.astype("<U2").copy()
    elements[[4, 17, 33]] = ["S", "P", "Fe"]
    rng = np.random.default_rng(5)
    coeff_a, coeff_b = scattering_coefficients(elements)
    voxel = np.array([0.9, 1.0, 1.1])
    origin = xyz.min(axis=0) - 4.0
    shape = tuple(np.ceil((xyz.max(axis=0) + 4.0 - origin) / voxel).astype(int)[::-1])
    blur = resolution_blur(3.0)
    target = model_map(xyz, shape, origin, voxel, coeff_a, coeff_b, rng.uniform(20, 120, len(xyz)),
                       blur=blur, dtype=np.float64)
    target += rng.normal(0, 0.05 * target.std(), target.shape)
    mask = molecular_mask(xyz, mask_radii(elements), shape, origin, voxel)
    b_iso = rng.uniform(5, 200, len(xyz))
    b_iso[[4, 17, 33]] = [15.0, 60.0, 150.0]
    occupancy = rng.uniform(0.5, 1.0, len(xyz))
    return dict(xyz=xyz, elements=elements, target=target, mask=mask, origin=origin, voxel=voxel,
                shape=shape, coeff_a=coeff_a, coeff_b=coeff_b, blur=blur, b_iso=b_iso,
                occupancy=occupancy, data=correlation_data(target, origin, voxel, mask))


def value(p, b_iso):
    return cc_b_value_gradient(p["xyz"], p["data"], p["coeff_a"], p["coeff_b"], b_iso,
                               p["occupancy"], p["blur"])


def central_difference(func, b_iso, i, step=STEP):
    plus, minus = b_iso.copy(), b_iso.copy()
    plus[i] += step
    minus[i] -= step
    return (func(plus) - func(minus)) / (2 * step)


def test_value_is_minus_cc_mask_of_the_model_map(problem):
    t, gradient = value(problem, problem["b_iso"])
    model = model_map(problem["xyz"], problem["shape"], problem["origin"], problem["voxel"],
                      problem["coeff_a"], problem["coeff_b"], problem["b_iso"],
                      problem["occupancy"], blur=problem["blur"], dtype=np.float64,
                      cutoff=CORRELATION_CUTOFF)
    assert t == pytest.approx(-cc_mask(model, problem["target"], problem["mask"]), abs=1e-12)
    assert gradient.shape == (len(problem["xyz"]),)
    assert value(problem, problem["b_iso"])[0] == cc_b_value_gradient(
        problem["xyz"], problem["data"], problem["coeff_a"], problem["coeff_b"], problem["b_iso"],
        problem["occupancy"], problem["blur"], gradient=False)[0]


def test_cc_gradient_matches_finite_differences_per_atom(problem):
    """Every element (C, N, O, S, P, Fe) and B from 5 to 200 Å^2, each atom to 1e-4."""
    b_iso = problem["b_iso"]
    _, gradient = value(problem, b_iso)
    atoms = [0, 1, 3, 4, 17, 33] + [int(i) for i in np.argsort(b_iso)[[0, 1, -2, -1]]]
    assert {str(e) for e in problem["elements"][atoms]} >= {"C", "N", "O", "S", "P", "Fe"}
    for i in atoms:
        fd = central_difference(lambda b: value(problem, b)[0], b_iso, i)
        assert abs(fd) > 1e-8  # a real test: the atom's B changes CC
        assert abs(gradient[i] - fd) <= 1e-4 * abs(fd), (i, gradient[i], fd)


def test_cc_gradient_with_merged_gaussians_matches_finite_differences(problem):
    """The refinement's merged coefficients (1-3 Gaussians: the kernels' written-out loop)."""
    merged = dict(problem)
    merged["coeff_a"], merged["coeff_b"] = merged_coefficients(
        problem["coeff_a"], problem["coeff_b"], extra_b=5.0 + problem["blur"])
    assert merged["coeff_a"].shape[1] <= 3
    b_iso = problem["b_iso"]
    _, gradient = value(merged, b_iso)
    for i in [0, 1, 3, 4, 17, 33]:
        fd = central_difference(lambda b: value(merged, b)[0], b_iso, i)
        assert abs(fd) > 1e-8
        assert abs(gradient[i] - fd) <= 1e-4 * abs(fd), (i, gradient[i], fd)


def test_truncation_term_is_part_of_the_gradient(problem):
    """A linear map target sum_g w(g) rho(g) with w = 1 everywhere: the subtracted rho_i(R)
    moving with B contributes a visible share, so dropping it would fail this check."""
    p = problem
    weights = np.random.default_rng(6).uniform(0.5, 1.5, p["shape"])

    def linear(b_iso):
        return float(np.sum(weights * model_map(p["xyz"], p["shape"], p["origin"], p["voxel"],
                                                p["coeff_a"], p["coeff_b"], b_iso, p["occupancy"],
                                                blur=p["blur"], dtype=np.float64)))

    amplitude, exponent = atom_gaussians(p["coeff_a"], p["coeff_b"], p["b_iso"], p["occupancy"],
                                         p["blur"])
    gradient = b_gradient_from_map_gradient(weights, p["origin"], p["voxel"], p["xyz"], amplitude,
                                            exponent, cutoff_radii(exponent))
    for i in (2, 4, 33, 40):
        fd = central_difference(linear, p["b_iso"], i)
        assert abs(gradient[i] - fd) <= 1e-4 * abs(fd), (i, gradient[i], fd)


def test_group_gradient_is_the_sum_over_the_group(problem):
    """One B per residue: dT/dB_g = sum of dT/dB_i over the residue, checked by differences
    in the group B."""
    p = problem
    group = np.arange(len(p["xyz"])) // 5  # poly-Ala: five heavy atoms per residue
    n_groups = int(group.max()) + 1
    group_b = np.random.default_rng(7).uniform(20, 150, n_groups)
    _, atom_gradient = value(p, group_b[group])
    gradient = sum_by_group(atom_gradient, group, n_groups)
    for g in (0, 4, 9):
        fd = central_difference(lambda b: value(p, b[group])[0], group_b, g)
        assert abs(gradient[g] - fd) <= 1e-4 * abs(fd), (g, gradient[g], fd)


def test_sum_by_group_skips_negative_groups():
    out = sum_by_group(np.array([1.0, 2.0, 4.0, 8.0]), np.array([1, -1, 1, 0]), 3)
    np.testing.assert_array_equal(out, [8.0, 5.0, 0.0])


def test_b_restraint_value_and_gradient():
    rng = np.random.default_rng(8)
    b_iso = rng.uniform(10, 150, 30)
    pairs = np.stack([np.arange(29), np.arange(1, 30)], axis=1)
    pairs = np.concatenate([pairs, [[0, 7], [3, 20]]])
    weight = rng.uniform(0.5, 2.0, len(pairs))
    total, gradient = b_similarity_value_gradient(b_iso, pairs, weight)
    i, j = pairs.T
    assert total == pytest.approx(np.sum(weight * (b_iso[i] - b_iso[j]) ** 2
                                         / (0.5 * (b_iso[i] + b_iso[j]))), rel=1e-12)
    for atom in range(30):
        fd = central_difference(lambda b: b_similarity_value_gradient(b, pairs, weight)[0], b_iso,
                                atom)
        assert abs(gradient[atom] - fd) <= 1e-6 * max(abs(fd), 1e-3)
    # equal B cost nothing; the same difference costs less between mobile atoms
    assert b_similarity_value_gradient(np.full(30, 40.0), pairs)[0] == 0.0
    low = b_similarity_value_gradient(np.array([20.0, 30.0]), np.array([[0, 1]]))[0]
    high = b_similarity_value_gradient(np.array([120.0, 130.0]), np.array([[0, 1]]))[0]
    assert high < low
