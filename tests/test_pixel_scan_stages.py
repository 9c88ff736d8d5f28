"""The fast pixel scan's parts (issue 14, speed): the window rule, the translation search,
the rigid fit on an atom subset, the reused map transform, and the two-stage scan giving the
full scan's answer."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from varref.calibration import (fit_atoms, rigid_pose, run_pixel_scan, scaled_map,
                                scaling_centre)
from varref.engine.correlation import cc_box, pearson_cc
from varref.ensemble.cluster import dask_client
from varref.model import read_model
from varref.scale_score import ProfileMatcher, matched_model_map
from varref.scan_window import MARGIN, extension, initial_window
from varref.simulate import model_density, simulate_map
from varref.translation_search import translation_search


@pytest.fixture(scope="module")
def crambin():
    from tests.conftest import shared_file

    model = read_model(shared_file("models/1crn.pdb"))
    return model, simulate_map(model, 3.0)


# --------------------------------------------------------------------------- window rule


def window_scan(scores: np.ndarray, coarse_index: int) -> np.ndarray:
    """The trials the window rule scores for a curve ``scores`` (all trials known)."""
    scales = np.arange(len(scores), dtype=float)
    window = initial_window(scales, float(coarse_index))
    while True:
        more = extension(len(scores), window, scores[window])
        if not len(more):
            return window
        window = np.array(sorted(set(window) | set(more)))


@pytest.mark.parametrize("coarse_index", [0, 5, 20, 33, 40])
def test_window_grows_until_the_accurate_maximum_has_margin_trials_each_side(coarse_index):
    """However far the coarse optimum is from the accurate one (here trial 20 of 41), the
    scored window ends with the accurate maximum inside and MARGIN trials on each side."""
    scores = -((np.arange(41) - 20.3) ** 2)
    window = window_scan(scores, coarse_index)
    assert np.all(np.diff(window) == 1)  # contiguous
    assert int(window[np.argmax(scores[window])]) == 20
    assert window[0] <= 20 - MARGIN and window[-1] >= 20 + MARGIN
    if coarse_index == 20:
        assert len(window) == 2 * MARGIN + 1  # an unbiased coarse stage costs nothing more


def test_window_stops_at_the_ends_of_the_scan():
    scores = -((np.arange(15) - 0.2) ** 2)  # maximum on the first trial
    window = window_scan(scores, 9)
    assert window[0] == 0 and int(window[np.argmax(scores[window])]) == 0
    with pytest.raises(ValueError, match="finite"):
        extension(15, np.arange(3), np.full(3, np.nan))


# --------------------------------------------------------------------------- translation search


def test_translation_search_finds_the_density_several_angstroms_away(crambin):
    model, density = crambin
    true_shift = np.array([6.3, -4.1, 2.7])
    moved = replace(density, origin=density.origin + true_shift)  # the density moved
    found = translation_search(model, moved.normalised(), 3.0, max_shift=12.0)
    np.testing.assert_allclose(found, true_shift, atol=0.5)
    # a search radius below the offset cannot find it
    assert np.linalg.norm(translation_search(model, moved.normalised(), 3.0, 3.0) - true_shift) > 3


def test_translation_search_keeps_the_models_own_copy_among_equal_ones(crambin):
    """Density of two overlapping copies 14 Å apart, the model on the first: it stays there
    (the nearest of equally good peaks; within the rigid fit's reach, the overlap skews the
    peak), although the other copy is within the search radius."""
    model, density = crambin
    grid = simulate_map(model, 3.0, margin=20.0)
    twin = model_density(model, model.xyz, grid, 3.0) + model_density(
        model, model.xyz + np.array([14.0, 0.0, 0.0]), grid, 3.0)
    found = translation_search(model, replace(grid, data=twin).normalised(), 3.0, 20.0)
    assert np.linalg.norm(found) < 1.5


# --------------------------------------------------------------------------- fit and score


def test_rigid_fit_on_an_atom_subset_recovers_the_motion(crambin):
    """A 1.5° rotation and 0.8 Å shift of crambin (0.83 Å r.m.s.), fitted back on every 4th
    heavy atom (measured 0.05 Å r.m.s.; all 327 heavy atoms 0.02 Å)."""
    model, density = crambin
    atoms = fit_atoms(model, limit=int((~model.is_hydrogen).sum() // 4))
    assert len(atoms) <= (~model.is_hydrogen).sum() // 4 + 1
    assert not model.is_hydrogen[atoms].any()
    centre = model.xyz.mean(axis=0)
    rotation = Rotation.from_rotvec(np.radians(1.5) * np.array([0.6, 0.0, 0.8])).as_matrix()
    start = (model.xyz - centre) @ rotation.T + centre + np.array([0.5, -0.4, 0.5])
    r, t = rigid_pose(model, start, density.normalised(), atoms)
    fitted = start @ r.T + t
    assert np.sqrt(np.mean(np.sum((fitted - model.xyz) ** 2, axis=1))) < 0.1


def test_reused_transform_gives_the_one_off_matched_map_and_box_cc(crambin):
    """One ProfileMatcher for several voxel sizes (a scan's trials) equals a fresh match for
    each; its CC_box (from Fourier sums) equals the real-space CC over the box."""
    model, density = crambin
    matcher = ProfileMatcher(density.data)
    width = 1.0 / float(np.min(np.array(density.shape_xyz) * density.voxel_size))
    for scale in (0.98, 1.02):
        trial = scaled_map(density, scale, scaling_centre(model))
        calculated = model_density(model, model.xyz, trial, 3.5)
        reused, box = matcher.matched(calculated, trial.voxel_size, width)
        np.testing.assert_allclose(reused, matched_model_map(calculated, trial.data,
                                                             trial.voxel_size, width), atol=1e-6)
        assert box == pytest.approx(cc_box(calculated, trial.data), abs=1e-5)
        assert pearson_cc(reused, trial.data) > pearson_cc(calculated, trial.data)


# --------------------------------------------------------------------------- the two stages


def test_two_stage_scan_gives_the_full_scans_optimum(crambin):
    """Crambin, header +2 % applied about a point 60 Å from the model (a 1.2 Å offset): the
    coarse stage's window gives the same optimum as scoring every trial, within 0.1 %."""
    model, density = crambin
    wrong = replace(density, voxel_size=density.voxel_size * 1.02,
                    origin=density.origin - 60.0 * 0.02 / np.sqrt(3))
    scales = np.round(np.arange(0.95, 1.0501, 0.005), 6)
    with dask_client(workers=2, quiet=True) as client:
        fast = run_pixel_scan(client, model, wrong, 3.0, scales, progress=False)
        full = run_pixel_scan(client, model, wrong, 3.0, scales, progress=False, score_all=True)
    assert fast["scale"] == full["scale"]
    assert fast["scale"] == pytest.approx(1 / 1.02, rel=1e-3)
    scan = fast["scan"]
    assert 2 * MARGIN + 1 <= int(scan["scored"].sum()) < len(scales)
    assert np.isfinite(scan["atom_score"]).all() and (scan["fit_cpu_seconds"] > 0).all()
    assert np.isnan(scan["cc_matched"].values[~scan["scored"].values]).all()
