"""Density-correlation target T = -CC(model map, target map) and its gradient."""

from pathlib import Path

import numpy as np
import pytest

from varref.engine.cc_target import cc_target_value_gradient
from varref.engine.correlation import cc_mask, mask_radii, molecular_mask
from varref.engine.model_map import (
    CORRELATION_CUTOFF,
    model_map,
    resolution_blur,
    scattering_coefficients,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared"


@pytest.fixture(scope="module")
def problem():
    """Crambin at 3 Å: float64 target map from the true model, a perturbed start model,
    and the fixed mask built from the start model (skip without ../shared)."""
    path = SHARED / "data" / "models" / "1crn.pdb"
    if not path.exists():
        pytest.skip("shared data not available: data/models/1crn.pdb")
    gemmi = pytest.importorskip("gemmi")
    structure = gemmi.read_structure(str(path))
    structure.remove_hydrogens()
    atoms = [atom for chain in structure[0] for residue in chain for atom in residue]
    xyz = np.array([atom.pos.tolist() for atom in atoms])
    elements = [atom.element.name for atom in atoms]
    b_iso = np.array([atom.b_iso for atom in atoms]) + 20.0
    coeff_a, coeff_b = scattering_coefficients(elements)
    voxel = np.array([0.9, 1.0, 1.1])
    origin = xyz.min(axis=0) - 6.0
    shape = tuple(np.ceil((xyz.max(axis=0) + 6.0 - origin) / voxel).astype(int)[::-1])
    blur = resolution_blur(3.0)
    # the target in the representation the CC target uses, so the true model is stationary
    target = model_map(xyz, shape, origin, voxel, coeff_a, coeff_b, b_iso, blur=blur,
                       dtype=np.float64, cutoff=CORRELATION_CUTOFF)
    start = xyz + np.random.default_rng(40).normal(0, 0.3, xyz.shape)
    mask = molecular_mask(start, mask_radii(elements), shape, origin, voxel)
    return dict(xyz=xyz, start=start, target=target, origin=origin, voxel=voxel,
                shape=shape, mask=mask, coeff_a=coeff_a, coeff_b=coeff_b, b_iso=b_iso,
                blur=blur)


def evaluate(p, positions):
    return cc_target_value_gradient(positions, p["target"], p["origin"], p["voxel"],
                                    p["mask"], p["coeff_a"], p["coeff_b"], p["b_iso"],
                                    blur=p["blur"])


def test_value_is_minus_cc_mask_of_the_model_map(problem):
    value, gradient = evaluate(problem, problem["start"])
    model = model_map(problem["start"], problem["shape"], problem["origin"],
                      problem["voxel"], problem["coeff_a"], problem["coeff_b"],
                      problem["b_iso"], blur=problem["blur"], dtype=np.float64,
                      cutoff=CORRELATION_CUTOFF)
    assert value == pytest.approx(-cc_mask(model, problem["target"], problem["mask"]),
                                  abs=1e-12)
    assert -1.0 < value < -0.5
    assert gradient.shape == problem["start"].shape


def test_gradient_matches_finite_differences(problem):
    start = problem["start"]
    _, gradient = evaluate(problem, start)
    atoms = np.random.default_rng(41).choice(len(start), 12, replace=False)
    step = 1e-5
    fd = np.zeros((len(atoms), 3))
    for row, i in enumerate(atoms):
        for axis in range(3):
            plus, minus = start.copy(), start.copy()
            plus[i, axis] += step
            minus[i, axis] -= step
            fd[row, axis] = (evaluate(problem, plus)[0] - evaluate(problem, minus)[0]) / (
                2 * step)
    assert np.abs(gradient[atoms] - fd).max() / np.abs(fd).max() < 1e-4


def test_true_model_is_a_stationary_point_and_descent_helps(problem):
    value, gradient = evaluate(problem, problem["xyz"])
    assert value == pytest.approx(-1.0, abs=1e-12)
    _, start_gradient = evaluate(problem, problem["start"])
    assert np.abs(gradient).max() < 1e-6 * np.abs(start_gradient).max()
    # a small step down the gradient lowers the target
    start_value, _ = evaluate(problem, problem["start"])
    step = 0.05 / np.abs(start_gradient).max()
    assert evaluate(problem, problem["start"] - step * start_gradient)[0] < start_value


def test_model_outside_the_mask_gives_zero(problem):
    far = problem["start"] + 1000.0
    value, gradient = evaluate(problem, far)
    assert value == 0.0 and np.all(gradient == 0.0)
    with pytest.raises(ValueError):
        cc_target_value_gradient(problem["start"], problem["target"], problem["origin"],
                                 problem["voxel"], problem["mask"][:-1], problem["coeff_a"],
                                 problem["coeff_b"], problem["b_iso"])


@pytest.mark.parametrize("chunk", [None, 7])
def test_masked_correlation_and_its_density_derivative(chunk, monkeypatch):
    """The masked-sum kernels: CC equals numpy's Pearson correlation over the mask, and the
    derivative grid they write is dCC/drho (central differences) on the mask, zero off it —
    also when the mask's points are summed in many chunks and the chunks combined."""
    from varref.engine import cc_target
    from varref.engine.cc_target import correlation_data, derivative_grid, masked_correlation

    if chunk is not None:
        monkeypatch.setattr(cc_target, "MASK_CHUNK", chunk)
    rng = np.random.default_rng(3)
    target = rng.normal(size=(6, 7, 8))
    mask = rng.random((6, 7, 8)) < 0.4
    data = correlation_data(target, np.zeros(3), np.ones(3), mask, crop=False)
    assert len(data.chunks) == (1 if chunk is None else -(-mask.sum() // chunk))
    model = rng.normal(size=(6, 7, 8)) + 0.5 * target
    expected = np.corrcoef(model[mask], target[mask])[0, 1]
    assert masked_correlation(model.copy(), data) == pytest.approx(expected, rel=1e-12)
    derivative = derivative_grid(data)
    unchanged = model.copy()
    assert masked_correlation(model, data, derivative) == pytest.approx(expected, rel=1e-12)
    assert np.array_equal(model, unchanged)  # the model map is only read
    assert np.all(derivative[~mask] == 0.0) and np.all(derivative[mask] != 0.0)
    h = 1e-6
    for index in zip(*np.nonzero(mask)[:3]):
        if rng.random() > 0.2:
            continue
        up, down = model.copy(), model.copy()
        up[index] += h
        down[index] -= h
        numeric = (masked_correlation(up, data) - masked_correlation(down, data)) / (2 * h)
        assert derivative[index] == pytest.approx(numeric, rel=1e-5, abs=1e-9)
    assert masked_correlation(np.ones((6, 7, 8)), data) is None
    with pytest.raises(ValueError, match="derivative"):
        masked_correlation(model, data, np.zeros((6, 7, 9)))


def test_derivative_grid_is_zero_off_whichever_mask_it_serves():
    """The per-thread dCC/drho grid keeps its zeros between evaluations of one mask and is
    cleared when a target with another mask of the same shape takes it: alternating two
    targets gives each the gradient a fresh evaluation gives."""
    import varref.engine.cc_target as cc_target
    from varref.engine.cc_target import cc_value_gradient, correlation_data, derivative_grid
    from varref.engine.parallel import scratch_grid

    rng = np.random.default_rng(5)
    xyz = rng.uniform(3.0, 9.0, size=(12, 3))
    coeff_a = np.tile([[2.0, 1.0, 0.5, 0.2, 0.1]], (12, 1))
    coeff_b = np.tile([[10.0, 3.0, 1.0, 0.5, 0.2]], (12, 1))
    target = rng.normal(size=(12, 12, 12)) + 1.0
    masks = [rng.random((12, 12, 12)) < fraction for fraction in (0.3, 0.6)]
    targets = [correlation_data(target, np.zeros(3), np.ones(3), m, crop=False) for m in masks]

    def fresh(data):
        scratch_grid(data.shape, np.float64, "correlation dCC/drho").fill(np.nan)  # poison
        cc_target._derivative_owner.grid = None  # forget: the next call zeroes in full
        return cc_value_gradient(xyz, data, coeff_a, coeff_b, 20.0)

    expected = [fresh(data) for data in targets]
    for data, (value, gradient) in [*zip(targets, expected), *zip(targets[::-1], expected[::-1])]:
        got_value, got_gradient = cc_value_gradient(xyz, data, coeff_a, coeff_b, 20.0)
        assert got_value == value and np.array_equal(got_gradient, gradient)
        grid = derivative_grid(data)
        assert np.all(grid[~masks[targets.index(data)]] == 0.0)
