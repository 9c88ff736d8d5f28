"""Atom-centred map target (eqs 7, 8): value, gradient, batching, weights."""

import numpy as np
import pytest

from varref.engine.interpolation import interpolate
from varref.engine.map_target import (
    map_target_value_gradient,
    map_target_value_gradient_batched,
    map_target_weights,
)

ORIGIN = np.array([2.0, -1.0, 0.5])
VOXEL = np.array([1.0, 0.9, 1.1])
SHAPE = (20, 22, 24)  # (nz, ny, nx)


def smooth_map(dtype=np.float64):
    iz, iy, ix = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    x = ORIGIN[0] + ix * VOXEL[0]
    y = ORIGIN[1] + iy * VOXEL[1]
    z = ORIGIN[2] + iz * VOXEL[2]
    rng = np.random.default_rng(10)
    data = np.zeros(SHAPE)
    for centre in rng.uniform([6, 4, 5], [20, 15, 17], size=(12, 3)):
        data += np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2
                         + (z - centre[2]) ** 2) / 4.0)
    return data.astype(dtype)


def random_atoms(rng, n):
    nz, ny, nx = SHAPE
    u = rng.uniform([1.5, 1.5, 1.5], [nx - 3.5, ny - 3.5, nz - 3.5], size=(n, 3))
    return ORIGIN + u * VOXEL


def finite_difference(function, xyz, atoms, step=1e-6):
    fd = np.zeros((len(atoms), 3))
    for row, i in enumerate(atoms):
        for axis in range(3):
            plus = xyz.copy()
            minus = xyz.copy()
            plus[i, axis] += step
            minus[i, axis] -= step
            fd[row, axis] = (function(plus) - function(minus)) / (2 * step)
    return fd


def test_value_is_minus_weighted_sum_of_interpolated_density():
    rng = np.random.default_rng(11)
    data = smooth_map(np.float32)
    xyz = random_atoms(rng, 50)
    weights = rng.uniform(0, 3, 50)
    weights[::7] = 0.0
    for method in ("tricubic", "trilinear"):
        value, _ = map_target_value_gradient(data, ORIGIN, VOXEL, xyz, weights, method)
        expected = -np.sum(weights * interpolate(data, ORIGIN, VOXEL, xyz, method))
        assert value == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("method", ["tricubic", "trilinear"])
def test_gradient_matches_finite_differences(method):
    rng = np.random.default_rng(12)
    data = smooth_map()
    xyz = random_atoms(rng, 40)
    if method == "trilinear":  # keep away from the faces where the gradient jumps
        u = (xyz - ORIGIN) / VOXEL
        xyz = ORIGIN + (np.floor(u) + np.clip(u - np.floor(u), 0.01, 0.99)) * VOXEL
    weights = map_target_weights(rng.choice([1, 6, 7, 8, 16], size=40),
                                 scheme="atomic_number")
    _, gradient = map_target_value_gradient(data, ORIGIN, VOXEL, xyz, weights, method)
    atoms = np.arange(40)
    fd = finite_difference(
        lambda x: map_target_value_gradient(data, ORIGIN, VOXEL, x, weights, method)[0], xyz,
        atoms)
    assert np.abs(gradient - fd).max() / np.abs(fd).max() < 1e-4
    # zero-weight atoms (hydrogens here) feel no force
    assert np.all(gradient[weights == 0] == 0.0)


def test_batched_equals_single_and_matches_finite_differences():
    rng = np.random.default_rng(13)
    data = smooth_map()
    base = random_atoms(rng, 30)
    batch = base[None] + rng.normal(0, 0.4, size=(5, 30, 3))
    batch[2, 0] = [1e6, 0, 0]  # one atom far outside in one model
    weights = rng.uniform(0.5, 2.0, 30)
    values, gradients = map_target_value_gradient_batched(data, ORIGIN, VOXEL, batch, weights)
    assert values.shape == (5,) and gradients.shape == (5, 30, 3)
    for k in range(5):
        value, gradient = map_target_value_gradient(data, ORIGIN, VOXEL, batch[k], weights)
        assert values[k] == value
        np.testing.assert_array_equal(gradients[k], gradient)
    assert np.all(gradients[2, 0] == 0.0)

    def batched_sum(flat_model_3):
        batch_copy = batch.copy()
        batch_copy[3] = flat_model_3
        return map_target_value_gradient_batched(data, ORIGIN, VOXEL, batch_copy,
                                                 weights)[0][3]

    fd = finite_difference(batched_sum, batch[3].copy(), np.arange(30))
    assert np.abs(gradients[3] - fd).max() / np.abs(fd).max() < 1e-4


def test_atoms_outside_the_map_contribute_nothing():
    data = smooth_map(np.float32)
    xyz = np.array([[-50.0, 0.0, 0.0], [np.nan, 1.0, 1.0], [ORIGIN[0], 5.0, 5.0]])
    value, gradient = map_target_value_gradient(data, ORIGIN, VOXEL, xyz)
    assert value == 0.0 and np.all(gradient == 0.0)


def test_default_weights_exclude_hydrogens():
    z = np.array([6, 1, 7, 8, 1, 16])
    np.testing.assert_array_equal(map_target_weights(z), [1, 0, 1, 1, 0, 1])
    np.testing.assert_array_equal(map_target_weights(z, scheme="atomic_number"),
                                  [6, 0, 7, 8, 0, 16])
    np.testing.assert_array_equal(map_target_weights(z, include_hydrogens=True), np.ones(6))
    flags = np.array([False, False, False, False, False, True])  # explicit flags win
    np.testing.assert_array_equal(map_target_weights(z, is_hydrogen=flags),
                                  [1, 1, 1, 1, 1, 0])
    with pytest.raises(ValueError):
        map_target_weights(z, scheme="mass")


def test_out_argument_and_shape_checks():
    rng = np.random.default_rng(14)
    data = smooth_map(np.float32)
    xyz = random_atoms(rng, 10)
    out = np.full((10, 3), np.nan)
    value, gradient = map_target_value_gradient(data, ORIGIN, VOXEL, xyz, out=out)
    assert gradient is out and np.all(np.isfinite(out))
    with pytest.raises(ValueError):
        map_target_value_gradient(data, ORIGIN, VOXEL, xyz, weights=np.ones(9))
    with pytest.raises(ValueError):
        map_target_value_gradient(data, ORIGIN, VOXEL, xyz[None])
    with pytest.raises(ValueError):
        map_target_value_gradient_batched(data, ORIGIN, VOXEL, xyz)
    with pytest.raises(ValueError):
        map_target_value_gradient(data, ORIGIN, VOXEL, xyz, out=np.empty((10, 3), np.float32))
