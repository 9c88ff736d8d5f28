"""Nearest-atom labels of a grid (the pixel scan's segment of every CC_mask point).

The kernel has no derivative (labels are piecewise constant), so instead of a finite-
difference check it is checked against an exact nearest-neighbour query.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from varref.engine.correlation import SOLVENT_RADIUS, mask_radii, molecular_mask
from varref.engine.nearest_atom import nearest_atom_grid


def grid_points(shape, origin, voxel_size):
    index = np.argwhere(np.ones(shape, bool))[:, ::-1]  # (x, y, z) order
    return origin + index * voxel_size


def test_labels_equal_a_kd_tree_within_the_radius_and_minus_one_beyond():
    rng = np.random.default_rng(3)
    xyz = rng.uniform(2.0, 14.0, size=(60, 3))
    origin, voxel = np.array([0.3, -0.2, 0.1]), np.array([0.7, 0.8, 0.9])
    shape = (20, 22, 24)
    radius = 2.2
    label = nearest_atom_grid(xyz, radius, shape, origin, voxel)
    distance, nearest = cKDTree(xyz).query(grid_points(shape, origin, voxel))
    inside = distance <= radius
    assert 0.2 < inside.mean() < 0.9  # both kinds of points are present
    np.testing.assert_array_equal(label.ravel()[inside], nearest[inside])
    assert np.all(label.ravel()[~inside] == -1)


def test_every_mask_point_gets_its_nearest_atom(shared):
    """With the largest mask radius + solvent radius, every CC_mask point of a real model
    is labelled, and by its nearest atom (as a k-d tree query over all atoms says)."""
    from varref.model import read_model

    model = read_model(shared("models/1crn.pdb"))
    heavy = ~model.is_hydrogen
    xyz, radii = model.xyz[heavy], mask_radii(model.element[heavy])
    origin, voxel = xyz.min(axis=0) - 4.0, np.array([0.9, 0.9, 0.9])
    shape = tuple(np.ceil((np.ptp(xyz, axis=0) + 8.0) / voxel).astype(int)[::-1])
    mask = molecular_mask(xyz, radii, shape, origin, voxel)
    label = nearest_atom_grid(xyz, float(radii.max()) + SOLVENT_RADIUS, shape, origin, voxel)[mask]
    points = grid_points(shape, origin, voxel)[mask.ravel()]
    assert label.min() >= 0
    np.testing.assert_array_equal(label, cKDTree(xyz).query(points)[1])


def test_bad_radius_and_coordinates_are_refused():
    with pytest.raises(ValueError, match="radius"):
        nearest_atom_grid(np.zeros((1, 3)), 0.0, (2, 2, 2), np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="shape"):
        nearest_atom_grid(np.zeros((3, 2)), 1.0, (2, 2, 2), np.zeros(3), np.ones(3))
