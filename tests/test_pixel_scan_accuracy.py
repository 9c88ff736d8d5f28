"""Pixel-size scan on maps from an independent simulator (issue 14): accuracy and honest sigma.

The maps come from gemmi's DensityCalculatorE with a sharp Fourier cutoff at 1/d
(:mod:`varref.independent_maps`), whose point-spread function is not varref's Gaussian; the
previous score (CC_mask against varref's model map) was biased on them by 0.2-2.5 %.
"""

from __future__ import annotations

from dataclasses import replace

import gemmi
import numpy as np
import pytest

from varref.calibration import bootstrap_optimum, parabola_optimum, run_pixel_scan
from varref.scale_score import cc_of_sums, matched_model_map, segment_sums
from varref.engine.correlation import pearson_cc
from varref.ensemble.cluster import dask_client
from varref.independent_maps import gemmi_map, sharp_cutoff
from varref.model import Model
from varref.simulate import model_density


def load(path, selection: str = "/1") -> Model:
    """The selected polymer atoms of a model file (waters and ligands removed)."""
    st = gemmi.read_structure(str(path))
    st.remove_ligands_and_waters()
    return Model.from_structure(gemmi.Selection(selection).copy_structure_selection(st),
                                source=str(path))


@pytest.fixture(scope="module")
def client():
    with dask_client(workers=2, quiet=True) as connected:
        yield connected


def radial_frequency(shape, voxel_size):
    fz, fy = (np.fft.fftfreq(n, d=v) for n, v in zip(shape[:2], voxel_size[::-1][:2]))
    fx = np.fft.rfftfreq(shape[2], d=voxel_size[0])
    return np.sqrt(fz[:, None, None] ** 2 + fy[None, :, None] ** 2 + fx[None, None, :] ** 2)


def test_gemmi_map_is_band_limited_and_sits_on_the_model(shared):
    model = load(shared("models/1crn.pdb"))
    density = gemmi_map(model, 3.0)
    assert np.all(density.voxel_size < 3.0 / 4 + 1e-9)  # gemmi rounds the grid up: <= d/4
    power = np.abs(np.fft.rfftn(density.data)) ** 2
    s = radial_frequency(density.data.shape, density.voxel_size)
    assert power[s > 1 / 3.0 + 1e-3].sum() < 1e-8 * power.sum()
    # the same atoms through varref's own kernel (blurred by B = 40 against aliasing, the blur
    # taken off inside 1/d) and the same cutoff: the same map, so it is in the model's frame
    ours = sharp_cutoff(model_density(model, model.xyz, density, np.sqrt(10.0)), density.voxel_size,
                        3.0, unblur=40.0)
    assert pearson_cc(ours, density.data) > 0.995


def test_matched_model_map_takes_on_the_maps_radial_profile(shared):
    model = load(shared("models/1crn.pdb"))
    grid = gemmi_map(model, 3.0)
    gaussian = model_density(model, model.xyz, grid, 3.0)  # varref's point-spread function
    # the "data": the same atoms with B + 10 instead of B + 36, cut sharply at 1/(3.4 Å)
    # (computed with B + 40, alias-free on this grid, and unblurred by 30 inside the cutoff)
    data = sharp_cutoff(model_density(model, model.xyz, grid, np.sqrt(10.0)), grid.voxel_size, 3.4,
                        unblur=30.0)
    unmatched = pearson_cc(gaussian, data)
    width = 1.0 / float(np.min(np.array(grid.shape_xyz) * grid.voxel_size))
    matched = pearson_cc(matched_model_map(gaussian, data, grid.voxel_size, width), data)
    # measured 0.953 -> 0.995: what remains is the shell that straddles the cutoff, whose
    # coefficients share one scale although half of them are zero in the data
    assert unmatched < 0.97 and matched > 0.99
    assert 1 - matched < 0.15 * (1 - unmatched)


def test_cc_from_segment_sums_equals_the_cc_of_the_chosen_points():
    rng = np.random.default_rng(1)
    points = rng.uniform(0, 20, size=(500, 3))
    atoms = rng.uniform(0, 20, size=(40, 3))
    segments = np.repeat(np.arange(8), 5)
    x = rng.normal(size=500)
    y = 0.7 * x + rng.normal(size=500)
    from scipy.spatial import cKDTree

    owner = segments[cKDTree(atoms).query(points)[1]]  # each point to its nearest atom's segment
    sums = segment_sums(x, y, owner, 8)
    assert cc_of_sums(sums) == pytest.approx(pearson_cc(x, y), abs=1e-12)
    assert cc_of_sums(sums, 3.0 * np.ones(8)) == pytest.approx(pearson_cc(x, y), abs=1e-12)
    # segment 2 left out and segment 5 taken twice: the CC of exactly those points
    w = np.ones(8)
    w[2], w[5] = 0, 2
    pick = np.concatenate([np.flatnonzero(owner != 2), np.flatnonzero(owner == 5)])
    assert cc_of_sums(sums, w) == pytest.approx(pearson_cc(x[pick], y[pick]), abs=1e-12)


def test_bootstrap_spread_follows_how_much_segments_disagree():
    """Segments whose own optima scatter by tau give a bootstrap sigma ~ tau / sqrt(n)."""
    scales = np.linspace(0.98, 1.02, 9)
    rng = np.random.default_rng(2)
    n_segments = 40

    def sums_for(tau: float) -> list[np.ndarray]:
        optimum = 1.0 + tau * rng.standard_normal(n_segments)
        out = []
        for s in scales:
            # per segment: x, y with a CC that peaks at the segment's optimum
            cc = 0.95 - 50.0 * (s - optimum) ** 2
            n = np.full(n_segments, 1000.0)
            sxx = syy = n.copy()
            out.append(np.stack([n, np.zeros(n_segments), np.zeros(n_segments), sxx, syy, cc * n], axis=1))
        return out

    for tau in (0.002, 0.01):
        sigma, vertices = bootstrap_optimum(scales, sums_for(tau))
        assert np.isfinite(vertices).mean() > 0.95
        assert sigma == pytest.approx(tau / np.sqrt(n_segments), rel=0.35)
    fixed = sums_for(0.01)  # seeded: the same sigma every time, another with another seed
    assert bootstrap_optimum(scales, fixed, seed=5)[0] == bootstrap_optimum(scales, fixed, seed=5)[0]
    assert bootstrap_optimum(scales, fixed, seed=5)[0] != bootstrap_optimum(scales, fixed, seed=6)[0]


def scan_case(client, model: Model, d: float, header_error: float, step: float, half: int):
    """Scan truth ± ``half`` steps (offset by a third of a step, so that no trial sits on the
    truth); returns (result, truth, old CC_mask optimum)."""
    truth_map = gemmi_map(model, d)
    wrong = replace(truth_map, voxel_size=truth_map.voxel_size * header_error)
    truth = 1.0 / header_error
    scales = np.round(truth + step / 3 + step * np.arange(-half, half + 1), 6)
    result = run_pixel_scan(client, model, wrong, d, scales, progress=False)
    old, _, _ = parabola_optimum(result["scan"]["scale"].values, result["scan"]["cc_mask"].values)
    return result, truth, old


def test_independent_map_scale_within_0p1_percent_and_3_sigma(client, shared):
    """Crambin, 3.5 Å gemmi map, header +2 %: the scale within 0.1 % and 3 sigma; the previous
    score (CC_mask of varref's Gaussian model map) was off by more than 0.2 % on the same scan."""
    model = load(shared("models/1crn.pdb"))
    result, truth, old = scan_case(client, model, 3.5, 1.02, 0.005, 3)
    error = result["scale"] - truth
    assert abs(error) < 1e-3 * truth
    assert 0 < result["scale_sigma"] and abs(error) < 3 * result["scale_sigma"]
    assert abs(old - truth) > 2e-3 * truth
    assert result["cc_matched_best"] > 0.99


MATRIX_MODELS = {"1ubq": ("models/1ubq.pdb", "/1/A"),
                 "trpv1": ("maps/emd5778_trpv1_tm/transmem.pdb.renum.pdb", "/1/*/1-205")}
#: Every case, ubiquitin at 4.5 Å with the header -3 % included: it was the one case outside
#: 0.1 % (-0.16 %, a strict xfail) until the profile match's FFT box was zero-padded to
#: FFT-friendly sizes (speed, issue 14); now -0.000 %. That is not a targeted fix: on this
#: 602-atom model at 4.5 Å the optimum moves by up to 0.16 % with how the box is padded
#: (docs/methods-calibration.md), so this case sits near the bound.
MATRIX = [(name, d, error) for name in MATRIX_MODELS for d in (2.5, 3.5, 4.5) for error in (1.02, 0.97)]


@pytest.mark.slow
@pytest.mark.parametrize("name, d, header_error", MATRIX)
def test_independent_maps_matrix(client, shared, name, d, header_error):
    """Two model sizes, 2.5/3.5/4.5 Å, header +2 % and -3 %: within 0.1 % and 3 sigma."""
    model_file, selection = MATRIX_MODELS[name]
    model = load(shared(model_file), selection)
    result, truth, _ = scan_case(client, model, d, header_error, 0.005, 4)
    error = result["scale"] - truth
    assert abs(error) < 3 * result["scale_sigma"]
    assert abs(error) < 1e-3 * truth
