"""The band-limited distance transform of the FSC's soft mask against scipy's full
Euclidean distance transform: equal to the last bit within the band, on random regions
and anisotropic grids, and the soft model mask unchanged by it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import binary_dilation, distance_transform_edt

from varref.engine.band_distance import cosine_edge_within_band, distance_within_band


@pytest.mark.parametrize("shape, sampling, band", [
    ((40, 50, 60), (1.0, 1.0, 1.0), 3.0),
    ((33, 41, 29), (0.8, 1.1, 1.37), 3.0),
    ((25, 30, 35), (0.5, 0.5, 0.5), 1.7),
    ((20, 20, 20), (1.0, 1.0, 1.0), 0.0),
])
def test_band_equals_the_full_distance_transform_within_the_band(shape, sampling, band):
    rng = np.random.default_rng(len(shape) * 7 + int(10 * band))
    # blobs of several sizes, some touching the grid's faces
    region = binary_dilation(rng.random(shape) < 0.003, iterations=2)
    region[0, :3, :3] = True
    region[2:-2, 2:-2, shape[2] // 2] = True  # a sheet whose points differ only along x
    distance = distance_within_band(region, np.array(sampling), band)
    full = distance_transform_edt(~region, sampling=sampling)
    within = full <= band
    np.testing.assert_array_equal(distance[within], full[within])
    assert np.all(distance[region] == 0.0)
    assert np.all(np.isinf(distance[~within]))
    assert within.sum() > region.sum() or band == 0.0  # the band reaches beyond the region


def test_soft_model_mask_is_what_the_full_transform_gives():
    from varref import fsc
    from varref.engine.correlation import atom_mask, mask_radii
    from varref.example_data import example_helix
    from varref.simulate import simulate_map

    model = example_helix(20)
    grid = simulate_map(model, 3.0)
    mask = fsc.model_mask(model, model.xyz, grid)
    heavy = ~model.is_hydrogen
    hard = atom_mask(model.xyz[heavy], mask_radii(model.element[heavy]) + fsc.MASK_MARGIN,
                     grid.data.shape, grid.origin, grid.voxel_size)
    full = distance_transform_edt(~hard, sampling=grid.voxel_size[::-1])
    expected = (0.5 * (1.0 + np.cos(np.pi * np.minimum(full / fsc.MASK_SOFT_EDGE, 1.0))))
    np.testing.assert_array_equal(mask, expected.astype(np.float32))
    assert 0 < np.count_nonzero((mask > 0) & (mask < 1))  # the edge is there


def test_bad_region_or_band_is_refused():
    with pytest.raises(ValueError, match="at least one"):
        distance_within_band(np.zeros((4, 4, 4), bool), np.ones(3), 1.0)
    with pytest.raises(ValueError, match="band"):
        distance_within_band(np.ones((4, 4, 4), bool), np.ones(3), -1.0)
    with pytest.raises(ValueError, match="edge width"):
        cosine_edge_within_band(np.ones((4, 4, 4), bool), np.ones(3), 0.0)
