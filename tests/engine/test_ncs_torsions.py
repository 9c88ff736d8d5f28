"""Torsion NCS kernel: analytic gradient against central finite differences with 2 and 4
copies, near, mid and far, across the ±180° wrap and with period 2; the value against an
independent evaluation of the formula; the harmonic limit (each copy to the mean); top-out
(a real difference is barely resisted, an outlier copy does not pull the others); degenerate
geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
from gradient_check import numerical_gradient

from varref.engine.ncs_torsions import (
    ncs_torsion_spread,
    ncs_torsion_value_and_gradient,
    ncs_torsion_value_and_gradient_batch,
)
from varref.engine.torsions import torsion_values

RTOL = 1e-4
SIGMA, LIMIT = 2.5, 15.0  # the term's defaults (Phenix torsion NCS)


def _four_atoms(phi_deg: float, rng: np.random.Generator) -> np.ndarray:
    """Four atoms with dihedral phi about a 1.5 Å bond, randomly rotated and shifted."""
    t = math.radians(phi_deg)
    xyz = np.array([[-0.5, 1.3, 0.0], [0.0, 0.0, 0.0], [1.5, 0.0, 0.0],
                    [2.0, 1.2 * math.cos(t), 1.2 * math.sin(t)]])
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))  # a proper rotation keeps the dihedral's sign
    return xyz @ q.T + rng.uniform(-10.0, 10.0, size=3)


def _copies(phis, seed=0):
    """One restraint with one copy per angle in ``phis``: (4n, 3) xyz, (n, 4) atoms,
    offsets [0, n]."""
    rng = np.random.default_rng(seed)
    xyz = np.concatenate([_four_atoms(p, rng) for p in phis])
    atoms = np.arange(4 * len(phis), dtype=np.int64).reshape(-1, 4)
    return xyz, atoms, np.array([0, len(phis)], dtype=np.int64)


def _value(xyz, atoms, offsets, period=None, sigma=SIGMA, limit=LIMIT):
    n = len(offsets) - 1
    period = np.ones(n, np.int64) if period is None else np.asarray(period, np.int64)
    grad = np.zeros_like(xyz)
    value = ncs_torsion_value_and_gradient(xyz, atoms, offsets, period,
                                           np.full(n, 1.0 / sigma**2), np.full(n, float(limit)),
                                           grad)
    return value, grad


def _reference_value(xyz, atoms, offsets, period, sigma=SIGMA, limit=LIMIT):
    """The formula evaluated independently with numpy."""
    phi = torsion_values(xyz, atoms)
    total = 0.0
    for r in range(len(offsets) - 1):
        p = phi[offsets[r]:offsets[r + 1]]
        n = len(p)
        span = 360.0 / period[r]
        for a in range(n):
            for b in range(a + 1, n):
                d = (p[a] - p[b] + span / 2) % span - span / 2
                total += limit**2 * (1 - math.exp(-d * d / (sigma**2 * limit**2))) / n
    return total


def _check_gradient(xyz, atoms, offsets, period=None, sigma=SIGMA, limit=LIMIT):
    value, analytic = _value(xyz, atoms, offsets, period, sigma, limit)
    period_ = np.ones(len(offsets) - 1, np.int64) if period is None else np.asarray(period)
    assert value == pytest.approx(_reference_value(xyz, atoms, offsets, period_, sigma, limit),
                                  rel=1e-10)
    numeric = numerical_gradient(lambda x: _value(x, atoms, offsets, period, sigma, limit)[0],
                                 xyz, step=1e-6)
    scale = np.max(np.abs(numeric))
    assert scale > 0
    assert np.max(np.abs(analytic - numeric)) <= RTOL * scale


@pytest.mark.parametrize(
    "phis",
    [
        (-62.0, -60.0),                 # near: harmonic
        (60.0, 85.0),                   # around the largest force (σl/√2 ≈ 26.5°)
        (60.0, 130.0),                  # far: the Gaussian tail
        (178.0, -176.0),                # across the wrap: d = −6°, not 354°
        (-175.0, 170.0),                # across the wrap the other way: d = +15°
        (-60.0, -58.0, -65.0, -50.0),   # four copies near agreement
        (175.0, -178.0, 179.0, -170.0),  # four copies straddling ±180°
        (60.0, 70.0, 40.0, 170.0),      # four copies, one far
    ],
)
def test_gradient_matches_finite_differences(phis):
    xyz, atoms, offsets = _copies(phis, seed=len(phis) + int(abs(phis[0])))
    np.testing.assert_allclose(torsion_values(xyz, atoms), phis, atol=1e-9)
    _check_gradient(xyz, atoms, offsets)


def test_gradient_many_restraints_shared_atoms_and_period_two():
    # restraints of 2, 3 and 4 copies built on random atoms (copies share atoms, as
    # torsions of one residue do), periods 1 and 2
    rng = np.random.default_rng(3)
    xyz = rng.normal(scale=2.0, size=(30, 3))
    counts = [2, 3, 4, 2, 4, 3]
    atoms = np.array([rng.choice(30, 4, replace=False) for _ in range(sum(counts))], np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    period = np.array([1, 2, 1, 2, 1, 2])
    _check_gradient(xyz, atoms, offsets, period, sigma=4.0, limit=40.0)  # a wider well
    _check_gradient(xyz, atoms, offsets, period)


def test_two_copies_equal_each_restrained_to_their_mean():
    # for two copies the pairwise form is exactly Σ_i topout(Δ_i) with Δ_i = ±d/2 ... up to
    # the scale of the top-out: E = ½ l² (1 − exp(−w d²/l²)); near agreement Σ (Δ_i/σ)²
    for d in (1.0, 10.0, 40.0):
        xyz, atoms, offsets = _copies((30.0, 30.0 + d))
        value, _ = _value(xyz, atoms, offsets)
        expected = 0.5 * LIMIT**2 * (1 - math.exp(-d * d / (SIGMA**2 * LIMIT**2)))
        assert value == pytest.approx(expected, rel=1e-9)
    xyz, atoms, offsets = _copies((30.0, 30.4))
    assert _value(xyz, atoms, offsets)[0] == pytest.approx(2 * (0.2 / SIGMA) ** 2, rel=1e-3)


def test_harmonic_limit_is_every_copy_restrained_to_the_mean():
    # spread ≤ 1°: the top-out's relative correction, ~w d²/(2l²), is below 3e-4
    phis = np.array([-60.3, -59.8, -60.1, -59.6])
    xyz, atoms, offsets = _copies(phis)
    value, _ = _value(xyz, atoms, offsets)
    assert value == pytest.approx(np.sum(((phis - phis.mean()) / SIGMA) ** 2), rel=1e-3)
    # and the gradient on each copy's torsion is that of (φ_i − mean)²/σ², mean included
    for c in range(4):
        delta = np.zeros(4)
        delta[c] = 1e-3
        moved = _copies(phis + delta)[0]
        slope = (_value(moved, atoms, offsets)[0] - value) / 1e-3
        assert slope == pytest.approx(2 * (phis[c] - phis.mean()) / SIGMA**2, rel=2e-2)


def test_top_out_a_real_difference_is_barely_resisted():
    # force on copy 2 as a function of the difference: peaks near σl/√2, gone at 90°
    def force(d):
        xyz, atoms, offsets = _copies((20.0, 20.0 + d), seed=1)
        return np.linalg.norm(_value(xyz, atoms, offsets)[1][4:8])

    peak = force(SIGMA * LIMIT / math.sqrt(2.0))
    assert force(5.0) < peak and force(60.0) < peak
    assert force(90.0) < 0.02 * peak  # 1.5 %
    assert force(120.0) < 1e-3 * peak  # 0.02 %
    # the energy of a 90° difference is within 1 % of the plateau l²/2
    xyz, atoms, offsets = _copies((20.0, 110.0))
    assert _value(xyz, atoms, offsets)[0] == pytest.approx(0.5 * LIMIT**2, rel=0.01)


def test_an_outlier_copy_does_not_pull_the_others():
    # three copies agree at 60° ± a little, the fourth is in another rotamer (180°): the
    # gradient on the three is what it is without the fourth (the mean would be pulled to
    # ~79° and drag them along)
    agreeing = (61.0, 58.0, 60.5)
    xyz4, atoms4, offsets4 = _copies(agreeing + (180.0,), seed=2)
    _, grad4 = _value(xyz4, atoms4, offsets4)
    _, grad3 = _value(xyz4[:12], atoms4[:3], np.array([0, 3]))
    # the group size n = 4 vs 3 rescales the pairwise sum: compare with that factor
    np.testing.assert_allclose(grad4[:12] * 4 / 3, grad3, rtol=5e-3)  # 0.2 % at d = 120°
    assert np.linalg.norm(grad4[12:]) < 5e-3 * np.linalg.norm(grad4[:12])  # 0.15 %
    # the mean form would pull the three agreeing copies towards the fourth
    mean = math.degrees(math.atan2(sum(math.sin(math.radians(p)) for p in agreeing + (180.0,)),
                                   sum(math.cos(math.radians(p)) for p in agreeing + (180.0,))))
    assert mean - max(agreeing) > 15.0


def test_period_two_sees_a_swapped_name_as_agreement():
    xyz, atoms, offsets = _copies((30.0, 30.0 - 180.0 + 4.0))
    flipped, _ = _value(xyz, atoms, offsets, period=[2])
    xyz, atoms, offsets = _copies((30.0, 34.0))
    same, _ = _value(xyz, atoms, offsets, period=[1])
    assert flipped == pytest.approx(same, rel=1e-9)
    xyz, atoms, offsets = _copies((30.0, -146.0), seed=4)
    _check_gradient(xyz, atoms, offsets, period=[2])


def test_batch_equals_single_and_spread():
    rng = np.random.default_rng(5)
    xyz = rng.normal(scale=2.0, size=(3, 16, 3))
    atoms = np.array([rng.choice(16, 4, replace=False) for _ in range(7)], dtype=np.int64)
    offsets = np.array([0, 2, 5, 7], dtype=np.int64)
    period, weight, limit = np.array([1, 2, 1]), np.full(3, 0.16), np.full(3, 15.0)
    values = np.full(3, 1.0)  # the batch kernel adds
    grad = np.zeros_like(xyz)
    ncs_torsion_value_and_gradient_batch(xyz, atoms, offsets, period, weight, limit, grad,
                                         values)
    for k in range(3):
        g = np.zeros((16, 3))
        v = ncs_torsion_value_and_gradient(xyz[k], atoms, offsets, period, weight, limit, g)
        assert values[k] == pytest.approx(1.0 + v, rel=1e-12)
        np.testing.assert_allclose(grad[k], g, rtol=1e-12, atol=1e-15)
    xyz, atoms, offsets = _copies((10.0, 25.0, -170.0, 175.0))
    assert ncs_torsion_spread(xyz, atoms, offsets, np.array([1]))[0] == pytest.approx(180.0)
    xyz, atoms, offsets = _copies((179.0, -178.0, 177.0))
    assert ncs_torsion_spread(xyz, atoms, offsets, np.array([1]))[0] == pytest.approx(5.0)


def test_degenerate_geometry_gives_finite_value_and_no_nan():
    xyz, atoms, offsets = _copies((60.0, 62.0))
    xyz[4:8] = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [2.5, 1.0, 0.0]]  # collinear
    value, grad = _value(xyz, atoms, offsets)
    assert math.isfinite(value) and np.all(np.isfinite(grad))
    assert np.all(grad[4:8] == 0.0)  # no force on the undefined torsion
    xyz[:] = 0.0  # every atom coincident
    value, grad = _value(xyz, atoms, offsets)
    assert math.isfinite(value) and np.all(grad == 0.0)
    # a restraint with one copy (possible after a subset) contributes nothing
    value, grad = _value(*_copies((60.0, 90.0))[:2], np.array([0, 1, 2], dtype=np.int64),
                         period=[1, 1])
    assert value == 0.0 and np.all(grad == 0.0)
