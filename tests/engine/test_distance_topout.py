"""Top-out distance kernel: value, analytic gradient against finite differences, limits."""

from __future__ import annotations

import numpy as np
import pytest

from varref.engine.bonds import bond_value_and_gradient
from varref.engine.distance_topout import (
    distance_topout_value_and_gradient,
    distance_topout_value_and_gradient_batch,
)

IDEAL, SIGMA, LIMIT = 2.9, 0.05, 0.6
WEIGHT = 1.0 / SIGMA**2


def _pair(distance: float, seed: int = 0) -> np.ndarray:
    """Two atoms ``distance`` apart along a random direction (plus a bystander atom)."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=3)
    u /= np.linalg.norm(u)
    a = rng.normal(size=3) * 3
    return np.array([a, a + distance * u, a + [5.0, 0.0, 0.0]])


def _evaluate(xyz, ideal=IDEAL, weight=WEIGHT, limit=LIMIT, flat=0.0):
    grad = np.zeros_like(xyz)
    value = distance_topout_value_and_gradient(
        xyz, np.array([[0, 1]], np.int64), np.array([ideal]), np.array([weight]),
        np.array([limit]), np.array([flat]), grad)
    return value, grad


def _numeric_gradient(xyz, h=1e-6, **kw):
    g = np.zeros_like(xyz)
    for i in range(xyz.shape[0]):
        for c in range(3):
            plus, minus = xyz.copy(), xyz.copy()
            plus[i, c] += h
            minus[i, c] -= h
            g[i, c] = (_evaluate(plus, **kw)[0] - _evaluate(minus, **kw)[0]) / (2 * h)
    return g


@pytest.mark.parametrize("delta", [0.03, -0.04, LIMIT / np.sqrt(2), LIMIT, -LIMIT, 2 * LIMIT,
                                   3.0 * LIMIT])
def test_gradient_matches_central_differences(delta):
    """Near the target, at the force maximum L/√2, at the limit L and far beyond it."""
    xyz = _pair(IDEAL + delta, seed=int(abs(delta) * 1000))
    _, analytic = _evaluate(xyz)
    numeric = _numeric_gradient(xyz)
    scale = np.max(np.abs(analytic))
    assert scale > 0
    assert np.max(np.abs(analytic - numeric)) / scale <= 1e-4
    assert np.all(analytic[2] == 0.0)  # the bystander atom is untouched


def test_value_is_harmonic_near_target_and_bounded_far_away():
    for delta in (1e-3, 0.01, 0.02):
        value, _ = _evaluate(_pair(IDEAL + delta))
        assert value == pytest.approx(WEIGHT * delta**2, rel=2 * delta**2 / LIMIT**2 + 1e-9)
    plateau = WEIGHT * LIMIT**2
    far_value, far_grad = _evaluate(_pair(IDEAL + 10 * LIMIT))
    assert far_value == pytest.approx(plateau, rel=1e-12)
    # force of a restraint 6 Å off: negligible compared with the peak force
    peak = 2 * WEIGHT * (LIMIT / np.sqrt(2)) * np.exp(-0.5)
    assert np.linalg.norm(far_grad[0]) < 1e-12 * peak
    values = [_evaluate(_pair(IDEAL + d))[0] for d in np.linspace(0, 5, 50)]
    assert np.all(np.diff(values) > -1e-12) and max(values) <= plateau


def test_force_peaks_at_limit_over_root_two():
    deltas = np.linspace(0.01, 3 * LIMIT, 400)
    force = [np.linalg.norm(_evaluate(_pair(IDEAL + d))[1][1]) for d in deltas]
    assert deltas[int(np.argmax(force))] == pytest.approx(LIMIT / np.sqrt(2), abs=0.01)


def test_nonpositive_limit_is_the_harmonic_bond_term():
    xyz = _pair(3.7)
    value, grad = _evaluate(xyz, limit=0.0)
    ref_grad = np.zeros_like(xyz)
    ref = bond_value_and_gradient(xyz, np.array([[0, 1]], np.int64), np.array([IDEAL]),
                                  np.array([WEIGHT]), ref_grad)
    assert value == pytest.approx(ref, rel=1e-14)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-14)


def test_coincident_atoms_give_finite_value_and_no_nan():
    xyz = np.zeros((2, 3))
    value, grad = _evaluate(xyz)
    assert np.isfinite(value) and value == pytest.approx(WEIGHT * LIMIT**2 *
                                                         (1 - np.exp(-(IDEAL / LIMIT) ** 2)))
    assert np.all(grad == 0.0)


def test_batch_accumulates_per_model():
    rng = np.random.default_rng(3)
    xyz = rng.normal(size=(3, 6, 3)) * 2.0
    atoms = np.array([[0, 1], [2, 3], [4, 5], [1, 4]], np.int64)
    ideal = np.array([2.9, 2.9, 3.1, 2.8])
    weight = np.full(4, WEIGHT)
    limit = np.array([0.6, 0.6, 0.0, 1.0])
    flat = np.array([0.0, 0.15, 0.2, 0.0])
    grad = np.ones_like(xyz)  # accumulated into, not overwritten
    values = np.full(3, 5.0)
    distance_topout_value_and_gradient_batch(xyz, atoms, ideal, weight, limit, flat, grad, values)
    for k in range(3):
        g = np.zeros((6, 3))
        v = distance_topout_value_and_gradient(xyz[k], atoms, ideal, weight, limit, flat, g)
        assert values[k] == pytest.approx(5.0 + v, rel=1e-14)
        np.testing.assert_allclose(grad[k], 1.0 + g, rtol=1e-13)


@pytest.mark.parametrize("delta", [0.2, -0.25, 0.15 + LIMIT / np.sqrt(2), -0.15 - 2 * LIMIT])
def test_gradient_with_flat_bottom_matches_central_differences(delta):
    xyz = _pair(IDEAL + delta, seed=int(abs(delta) * 1000) + 1)
    _, analytic = _evaluate(xyz, flat=0.15)
    numeric = _numeric_gradient(xyz, flat=0.15)
    scale = np.max(np.abs(analytic))
    assert scale > 0
    assert np.max(np.abs(analytic - numeric)) / scale <= 1e-4


def test_flat_bottom_is_zero_inside_and_shifts_the_potential_outside():
    for delta in (-0.149, -0.05, 0.0, 0.1, 0.149):
        value, grad = _evaluate(_pair(IDEAL + delta), flat=0.15)
        assert value == 0.0 and np.all(grad == 0.0)
    for delta in (0.3, -0.5, 1.4):
        shifted, _ = _evaluate(_pair(IDEAL + delta), flat=0.15)
        plain, _ = _evaluate(_pair(IDEAL + np.sign(delta) * (abs(delta) - 0.15)))
        assert shifted == pytest.approx(plain, rel=1e-9)
