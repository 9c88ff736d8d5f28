"""Analytic gradients of every restraint term against central finite differences, and the
combined single-model and batched paths (synthetic topologies, float64)."""

from __future__ import annotations

import numpy as np
import pytest
from gradient_check import numerical_gradient

from varref.engine.angles import angle_value_and_gradient
from varref.engine.bonds import bond_value_and_gradient
from varref.engine.chirals import chiral_value_and_gradient
from varref.engine.neighbours import build_nonbonded_pairs
from varref.engine.nonbonded import nonbonded_value_and_gradient
from varref.engine.planes import plane_value_and_gradient
from varref.engine.restraint_target import (
    TERM_NAMES,
    pack_restraints,
    restraint_terms,
    restraint_value_and_gradient,
    restraint_values_and_gradients_batch,
)
from synthetic_restraints import random_restraints
from varref.engine.torsions import torsion_value_and_gradient

RTOL = 1e-4


@pytest.fixture(scope="module")
def system():
    xyz, restraints = random_restraints(n_atoms=40, seed=7)
    packed = pack_restraints(restraints)
    rng = np.random.default_rng(11)
    xyz = xyz + rng.normal(scale=0.2, size=xyz.shape)
    pairs = build_nonbonded_pairs(xyz, packed.nonbonded, packed.nonbonded_settings)
    return xyz, packed, pairs


def _single_terms(packed, pairs):
    """(name, f(xyz, grad) -> value) for each term, in TERM_NAMES order."""
    p = packed.kernel_arrays
    return [
        ("bond", lambda x, g: bond_value_and_gradient(x, p.bond_atoms, p.bond_ideal,
                                                      p.bond_weight, g)),
        ("angle", lambda x, g: angle_value_and_gradient(x, p.angle_atoms, p.angle_ideal,
                                                        p.angle_weight, g)),
        ("torsion", lambda x, g: torsion_value_and_gradient(
            x, p.torsion_atoms, p.torsion_ideal, p.torsion_weight, p.torsion_period, g)),
        ("chiral", lambda x, g: chiral_value_and_gradient(
            x, p.chiral_atoms, p.chiral_ideal, p.chiral_weight, p.chiral_both_signs, g)),
        ("plane", lambda x, g: plane_value_and_gradient(x, p.plane_atoms, p.plane_offsets,
                                                        p.plane_weight, g)),
        ("nonbonded", lambda x, g: nonbonded_value_and_gradient(
            x, pairs.pairs, pairs.contact, packed.nonbonded_settings.c_rep, g)),
    ]


def _relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    return float(np.linalg.norm(analytic - numeric) / max(np.linalg.norm(numeric), 1e-300))


@pytest.mark.parametrize("term", TERM_NAMES)
def test_term_gradient_matches_finite_differences(system, term):
    xyz, packed, pairs = system
    kernel = dict(_single_terms(packed, pairs))[term]

    def value(x):
        return kernel(x, np.zeros_like(x))

    grad = np.zeros_like(xyz)
    total = kernel(xyz, grad)
    assert total > 0.0, "synthetic system should strain every term"
    numeric = numerical_gradient(value, xyz)
    assert _relative_error(grad, numeric) < RTOL


def test_total_restraint_gradient_matches_finite_differences(system):
    xyz, packed, pairs = system
    value, grad = restraint_value_and_gradient(xyz, packed, pairs)
    numeric = numerical_gradient(lambda x: restraint_value_and_gradient(x, packed, pairs)[0], xyz)
    assert _relative_error(grad, numeric) < RTOL
    terms = restraint_terms(xyz, packed, pairs)
    assert value == pytest.approx(sum(terms.values()), rel=1e-12)
    assert all(terms[name] > 0 for name in TERM_NAMES)


def test_total_is_sum_of_term_kernels(system):
    xyz, packed, pairs = system
    expected_grad = np.zeros_like(xyz)
    expected = sum(kernel(xyz, expected_grad) for _, kernel in _single_terms(packed, pairs))
    value, grad = restraint_value_and_gradient(xyz, packed, pairs)
    assert value == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-12)


def test_batched_total_equals_single_for_each_model(system):
    xyz, packed, _ = system
    rng = np.random.default_rng(9)
    batch = xyz + rng.normal(scale=0.4, size=(5,) + xyz.shape)
    nbl = packed.batch_neighbour_list()
    batch_pairs = nbl.update(batch)
    terms = np.empty((len(batch), len(TERM_NAMES)))
    values, grad = restraint_values_and_gradients_batch(batch, packed, batch_pairs,
                                                        terms_out=terms)
    for k in range(len(batch)):
        pairs_k = build_nonbonded_pairs(batch[k], packed.nonbonded, packed.nonbonded_settings)
        v, g = restraint_value_and_gradient(batch[k], packed, pairs_k)
        assert values[k] == pytest.approx(v, rel=1e-12)
        assert terms[k].sum() == pytest.approx(v, rel=1e-12)
        np.testing.assert_allclose(grad[k], g, rtol=1e-11, atol=1e-11)


def test_output_buffers_are_overwritten(system):
    xyz, packed, pairs = system
    buffer = np.full_like(xyz, 123.0)
    value, grad = restraint_value_and_gradient(xyz, packed, pairs, grad=buffer)
    assert grad is buffer
    ref_value, ref_grad = restraint_value_and_gradient(xyz, packed, pairs)
    assert value == ref_value
    np.testing.assert_array_equal(grad, ref_grad)


def test_without_pairs_the_repulsion_is_skipped(system):
    xyz, packed, pairs = system
    with_nb = restraint_terms(xyz, packed, pairs)
    without = restraint_terms(xyz, packed, None)
    assert without["nonbonded"] == 0.0
    assert without["bond"] == with_nb["bond"]
    values, _ = restraint_values_and_gradients_batch(xyz[None], packed, None)
    assert values[0] == pytest.approx(sum(without.values()), rel=1e-12)
