"""Merged Gaussians for the correlation targets, and the cropped correlation data."""

import numpy as np
import pytest

from test_model_map import read_crambin

from varref.engine.cc_target import cc_value_gradient, correlation_data
from varref.engine.correlation import mask_radii, molecular_mask
from varref.engine.model_map import (
    CORRELATION_CUTOFF,
    MERGE_TOLERANCE,
    merged_coefficients,
    model_map,
    resolution_blur,
    scattering_coefficients,
)

ELEMENTS = ["C", "N", "O", "S", "P", "Fe", "H"]


def radial_profile(a, b, extra_b, r):
    """The atom's real-space density at radii r (the model map's formula, untruncated)."""
    total = b + extra_b
    return sum(a_k * (4 * np.pi / t) ** 1.5 * np.exp(-4 * np.pi**2 * r**2 / t)
               for a_k, t in zip(a, total))


@pytest.mark.parametrize("extra_b", [8.0, 26.0, 56.0, 150.0])
def test_profile_error_is_within_tolerance_by_numerical_integration(extra_b):
    """The closed-form error that picks the grouping agrees with a numerical integral of the
    3-D profiles, and every element is within the tolerance; the integral is unchanged."""
    a, b = scattering_coefficients(ELEMENTS)
    merged_a, merged_b = merged_coefficients(a, b, extra_b)
    r = np.linspace(0.0, 30.0, 60001)
    shell = 4 * np.pi * r**2
    for i, element in enumerate(ELEMENTS):
        full = radial_profile(a[i], b[i], extra_b, r)
        part = radial_profile(merged_a[i], merged_b[i], extra_b, r)
        error = np.sqrt(np.trapezoid(shell * (full - part) ** 2, r) / np.trapezoid(shell * full**2, r))
        assert error <= MERGE_TOLERANCE * 1.001, (element, extra_b, error)
        assert merged_a[i].sum() == pytest.approx(a[i].sum(), rel=1e-12)


def test_fewer_gaussians_for_wider_atoms():
    a, b = scattering_coefficients(ELEMENTS)
    counts = [merged_coefficients(a, b, extra_b)[0].shape[1] for extra_b in (1.0, 20.0, 56.0, 200.0)]
    assert counts == sorted(counts, reverse=True)
    assert counts[-1] == 1 and counts[0] >= 3
    # a tolerance of zero keeps every Gaussian
    assert merged_coefficients(a, b, 56.0, tolerance=0.0)[0].shape[1] == 5


@pytest.fixture(scope="module")
def crambin():
    _, xyz, elements, b_iso, _ = read_crambin()
    return xyz, elements, b_iso


@pytest.mark.parametrize("resolution", [2.0, 3.0, 4.5])
def test_merged_model_map_matches_the_full_one(crambin, resolution):
    """On a real model, the map from merged Gaussians correlates with the five-Gaussian map
    to better than 0.9999, and the correlation target's optimum does not move: the gradient
    of -CC(merged model, full map) at the true coordinates is tiny next to the gradient
    0.1 Å away."""
    xyz, elements, b_iso = crambin
    a, b = scattering_coefficients(elements)
    blur = resolution_blur(resolution)
    merged_a, merged_b = merged_coefficients(a, b, b_iso.min() + blur)
    assert merged_a.shape[1] < 5
    voxel = np.full(3, resolution / 4)
    origin = xyz.min(axis=0) - 6.0
    shape = tuple(np.ceil((xyz.max(axis=0) + 6.0 - origin) / voxel).astype(int)[::-1])
    full = model_map(xyz, shape, origin, voxel, a, b, b_iso, blur=blur, dtype=np.float64,
                     cutoff=CORRELATION_CUTOFF)
    merged = model_map(xyz, shape, origin, voxel, merged_a, merged_b, b_iso, blur=blur,
                       dtype=np.float64, cutoff=CORRELATION_CUTOFF)
    assert np.corrcoef(full.ravel(), merged.ravel())[0, 1] > 0.9999
    mask = molecular_mask(xyz, mask_radii(elements), shape, origin, voxel)
    data = correlation_data(full, origin, voxel, mask)
    _, at_truth = cc_value_gradient(xyz, data, merged_a, merged_b, b_iso, blur=blur)
    shifted = xyz + np.random.default_rng(3).normal(0.0, 0.1, xyz.shape)
    _, off_truth = cc_value_gradient(shifted, data, merged_a, merged_b, b_iso, blur=blur)
    assert np.linalg.norm(at_truth) < 0.1 * np.linalg.norm(off_truth)


def test_cropping_to_the_mask_is_exact(crambin):
    """The CC target on the mask's bounding box equals the one on the whole map."""
    xyz, elements, b_iso = crambin
    a, b = scattering_coefficients(elements)
    voxel = np.array([0.9, 1.0, 1.1])
    origin = xyz.min(axis=0) - 15.0  # a generous box: most of it outside the mask
    shape = tuple(np.ceil((xyz.max(axis=0) + 15.0 - origin) / voxel).astype(int)[::-1])
    blur = resolution_blur(3.0)
    target = model_map(xyz, shape, origin, voxel, a, b, b_iso + 10.0, blur=blur)
    start = xyz + np.random.default_rng(5).normal(0.0, 0.3, xyz.shape)
    mask = molecular_mask(start, mask_radii(elements), shape, origin, voxel)
    cropped = correlation_data(target, origin, voxel, mask)
    whole = correlation_data(target, origin, voxel, mask, crop=False)
    assert np.prod(cropped.shape) < 0.5 * np.prod(whole.shape)
    value_c, grad_c = cc_value_gradient(start, cropped, a, b, b_iso, blur=blur)
    value_w, grad_w = cc_value_gradient(start, whole, a, b, b_iso, blur=blur)
    assert value_c == pytest.approx(value_w, abs=1e-12)
    np.testing.assert_allclose(grad_c, grad_w, rtol=1e-9, atol=1e-12)
