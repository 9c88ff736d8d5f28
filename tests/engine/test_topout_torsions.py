"""Top-out torsion kernel: analytic gradient against central finite differences near, mid and
far from the reference and across the ±180° wrap, with and without a flat bottom; saturation,
periodicity, degenerate input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from gradient_check import numerical_gradient

from varref.engine.topout_torsions import (
    topout_torsion_deltas,
    topout_torsion_value_and_gradient,
    topout_torsion_value_and_gradient_batch,
    wrap_half_open_deg,
)
from varref.engine.torsions import torsion_values

RTOL = 1e-4
ONE = np.zeros((1, 4), dtype=np.int64) + np.arange(4)


def _four_atoms(phi_deg: float, seed: int = 0) -> np.ndarray:
    """Four atoms with dihedral phi about a 1.5 Å bond, randomly rotated and shifted."""
    t = math.radians(phi_deg)
    xyz = np.array([[-0.5, 1.3, 0.0], [0.0, 0.0, 0.0], [1.5, 0.0, 0.0],
                    [2.0, 1.2 * math.cos(t), 1.2 * math.sin(t)]])
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))  # a proper rotation keeps the dihedral's sign
    return xyz @ q.T + np.array([3.0, -1.0, 2.0])


def _value(xyz, atoms, ideal, sigma, limit, period=None, flat=0.0):
    n = len(atoms)
    period = np.ones(n, np.int64) if period is None else np.asarray(period, np.int64)
    grad = np.zeros_like(xyz)
    value = topout_torsion_value_and_gradient(
        xyz, atoms, np.asarray(ideal, float), np.full(n, 1.0 / sigma**2), np.full(n, float(limit)),
        period, np.full(n, float(flat)), grad)
    return value, grad


def _check_gradient(xyz, atoms, ideal, sigma, limit, period=None, flat=0.0):
    _, analytic = _value(xyz, atoms, ideal, sigma, limit, period, flat)
    numeric = numerical_gradient(lambda x: _value(x, atoms, ideal, sigma, limit, period, flat)[0],
                                 xyz, step=1e-6)
    scale = np.max(np.abs(numeric))
    assert scale > 0
    assert np.max(np.abs(analytic - numeric)) <= RTOL * scale


@pytest.mark.parametrize(
    "phi, ideal, sigma, limit",
    [
        (-62.0, -60.0, 1.0, 15.0),     # near: harmonic regime, Δ = -2°
        (72.0, 60.0, 1.0, 15.0),       # mid: Δ = 12°, around the largest force (σl/√2 ≈ 10.6°)
        (-95.0, -60.0, 1.0, 15.0),     # far: Δ = -35°, the Gaussian tail
        (150.0, 60.0, 2.0, 40.0),      # far with a wide well: Δ = 90°
        (-175.0, 170.0, 1.0, 15.0),    # across the wrap: φ − ideal = −345° → Δ = +15°
        (178.0, -176.0, 1.0, 15.0),    # across the wrap the other way: Δ = −6°
    ],
)
def test_gradient_matches_finite_differences(phi, ideal, sigma, limit):
    xyz = _four_atoms(phi, seed=int(abs(phi)))
    measured = torsion_values(xyz, ONE)[0]
    assert measured == pytest.approx(phi, abs=1e-9)
    _check_gradient(xyz, ONE, [ideal], sigma, limit)


@pytest.mark.parametrize("phi, flat, sigma, limit", [(-48.0, 10.0, 1.0, 15.0), (-75.0, 10.0, 1.0, 15.0),
                                                    (-140.0, 20.0, 2.0, 60.0), (175.0, 8.0, 2.0, 60.0)])
def test_gradient_with_flat_bottom_matches_finite_differences(phi, flat, sigma, limit):
    # residuals of 12°, -15°, -80° and across the wrap -125°: all beyond the flat half-width
    _check_gradient(_four_atoms(phi, seed=7), ONE, [-60.0], sigma, limit, flat=flat)


def test_flat_bottom_is_zero_inside_and_shifts_the_potential_outside():
    for delta in (-9.9, -3.0, 0.0, 4.0, 9.9):
        value, grad = _value(_four_atoms(-60.0 + delta), ONE, [-60.0], 1.0, 15.0, flat=10.0)
        assert value == 0.0 and np.all(grad == 0.0)
    # outside, E(Δ; f) = E(|Δ| − f; 0): the plain top-out moved out by the flat half-width
    for delta in (13.0, -25.0, 70.0):
        shifted, _ = _value(_four_atoms(-60.0 + delta), ONE, [-60.0], 2.0, 20.0, flat=10.0)
        plain, _ = _value(_four_atoms(-60.0 + math.copysign(abs(delta) - 10.0, delta)), ONE,
                          [-60.0], 2.0, 20.0)
        assert shifted == pytest.approx(plain, rel=1e-9)


def test_gradient_many_restraints_with_period_two():
    rng = np.random.default_rng(3)
    xyz = rng.normal(scale=2.0, size=(14, 3))
    atoms = np.array([rng.choice(14, 4, replace=False) for _ in range(10)], dtype=np.int64)
    phi = torsion_values(xyz, atoms)
    ideal = phi - rng.uniform(-40.0, 40.0, size=10)  # a spread of near, mid and far residuals
    period = np.array([1, 2] * 5)
    _check_gradient(xyz, atoms, ideal, 1.5, 15.0, period)


def test_batch_equals_single_models():
    rng = np.random.default_rng(5)
    xyz = rng.normal(scale=2.0, size=(3, 10, 3))
    atoms = np.array([rng.choice(10, 4, replace=False) for _ in range(6)], dtype=np.int64)
    ideal = rng.uniform(-180, 180, 6)
    weight, limit, period = np.full(6, 0.5), np.full(6, 20.0), np.ones(6, np.int64)
    flat = np.array([0.0, 5.0, 0.0, 10.0, 0.0, 2.0])
    values = np.full(3, 1.0)  # the batch kernel adds
    grad = np.zeros_like(xyz)
    topout_torsion_value_and_gradient_batch(xyz, atoms, ideal, weight, limit, period, flat, grad,
                                            values)
    for k in range(3):
        g = np.zeros((10, 3))
        v = topout_torsion_value_and_gradient(xyz[k], atoms, ideal, weight, limit, period, flat, g)
        assert values[k] == pytest.approx(1.0 + v, rel=1e-12)
        np.testing.assert_allclose(grad[k], g, rtol=1e-12, atol=1e-15)


def test_harmonic_near_reference_and_saturated_far():
    sigma, limit = 1.0, 15.0  # Phenix reference_model defaults
    plateau = limit**2
    near, _ = _value(_four_atoms(0.5), ONE, [0.0], sigma, limit)
    assert near == pytest.approx(0.5**2 / sigma**2, rel=1e-3)  # E ≈ (Δ/σ)²
    far, far_grad = _value(_four_atoms(120.0), ONE, [0.0], sigma, limit)
    assert far == pytest.approx(plateau, rel=0.02)
    assert far <= plateau
    # the force peaks at |Δ| = σ l / √2; at 120° it has vanished
    peak = sigma * limit / math.sqrt(2.0)
    _, peak_grad = _value(_four_atoms(peak), ONE, [0.0], sigma, limit)
    assert np.linalg.norm(far_grad) < 1e-6 * np.linalg.norm(peak_grad)
    # and the energy is monotonic in |Δ|
    energies = [_value(_four_atoms(d), ONE, [0.0], sigma, limit)[0] for d in (2, 8, 15, 30, 60)]
    assert np.all(np.diff(energies) > 0)


def test_wrap_is_half_open_and_symmetric():
    assert wrap_half_open_deg(180.0, 1) == 180.0
    assert wrap_half_open_deg(-180.0, 1) == 180.0
    assert wrap_half_open_deg(-345.0, 1) == pytest.approx(15.0)
    assert wrap_half_open_deg(350.0, 1) == pytest.approx(-10.0)
    assert wrap_half_open_deg(100.0, 2) == pytest.approx(-80.0)
    assert wrap_half_open_deg(90.0, 2) == 90.0
    a, _ = _value(_four_atoms(179.0), ONE, [-179.0], 1.0, 15.0)
    b, _ = _value(_four_atoms(-2.0), ONE, [0.0], 1.0, 15.0)
    assert a == pytest.approx(b, rel=1e-9)  # 2° across ±180°, not 358°


def test_period_two_accepts_the_flipped_reference():
    xyz = _four_atoms(30.0)
    same, _ = _value(xyz, ONE, [25.0], 1.0, 15.0, [2])
    flipped, _ = _value(xyz, ONE, [25.0 - 180.0], 1.0, 15.0, [2])
    assert same == pytest.approx(flipped, rel=1e-9)
    assert topout_torsion_deltas(xyz, ONE, np.array([205.0]), np.array([2]))[0] == \
        pytest.approx(5.0)


def test_degenerate_geometry_gives_finite_value_and_no_force():
    xyz = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [2.5, 1.0, 0.0]])
    value, grad = _value(xyz, ONE, [60.0], 1.0, 15.0)
    assert math.isfinite(value) and np.all(np.isfinite(grad))
    assert np.all(grad == 0.0)
    coincident = np.zeros((4, 3))
    value, grad = _value(coincident, ONE, [60.0], 1.0, 15.0)
    assert math.isfinite(value) and np.all(grad == 0.0)
