"""Cell-list neighbour search and the buffered non-bonded pair list."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from varref.engine.neighbours import NeighbourList, build_nonbonded_pairs
from varref.engine.nonbonded import (
    NonbondedSettings,
    build_nonbonded_topology,
    is_donor_acceptor_pair,
)
from varref.engine.restraint_target import pack_restraints
from synthetic_restraints import random_restraints


def pairs_within_cutoff(xyz: np.ndarray, cutoff: float) -> np.ndarray:
    """All pairs closer than ``cutoff`` through the production cell-list search: with no
    excluded pairs, no floors and every radius cutoff/2, each contact distance is cutoff."""
    n = len(xyz)
    none = np.zeros((0, 2), np.int64)
    topology = build_nonbonded_topology(n, np.full(n, cutoff / 2), np.full(n, np.nan),
                                        np.zeros(n, np.int8), np.zeros(n, bool), none, none,
                                        none)
    settings = NonbondedSettings(minimum_distance=0.0, default_distance=0.0, buffer=0.0)
    return build_nonbonded_pairs(xyz, topology, settings).pairs


def _brute_force_pairs(xyz: np.ndarray, cutoff: float) -> set[tuple[int, int]]:
    d2 = np.sum((xyz[:, None, :] - xyz[None, :, :]) ** 2, axis=-1)
    i, j = np.nonzero(np.triu(d2 < cutoff * cutoff, k=1))
    return set(zip(i.tolist(), j.tolist()))


def _as_set(pairs: np.ndarray) -> set[tuple[int, int]]:
    assert np.all(pairs[:, 0] < pairs[:, 1])
    found = set(map(tuple, pairs.tolist()))
    assert len(found) == len(pairs), "duplicate pairs"
    return found


@pytest.mark.parametrize("n, box, cutoff, seed", [
    (500, 20.0, 4.0, 0),      # dense
    (800, 60.0, 5.0, 1),      # sparse
    (300, 15.0, 7.3, 2),      # cutoff comparable to the box
    (1000, 30.0, 1.0, 3),     # many small cells (capped grid)
])
def test_cell_list_matches_brute_force(n, box, cutoff, seed):
    rng = np.random.default_rng(seed)
    xyz = rng.uniform(-box / 2, box / 2, size=(n, 3))
    assert _as_set(pairs_within_cutoff(xyz, cutoff)) == _brute_force_pairs(xyz, cutoff)


def test_cell_list_degenerate_inputs():
    rng = np.random.default_rng(4)
    flat = rng.uniform(0, 20, size=(200, 3))
    flat[:, 2] = 1.0  # zero extent along z
    assert _as_set(pairs_within_cutoff(flat, 3.0)) == _brute_force_pairs(flat, 3.0)
    # elongated and clustered: two far-apart clusters
    clusters = np.concatenate([rng.normal(0, 2, (150, 3)), rng.normal(500, 2, (150, 3))])
    assert _as_set(pairs_within_cutoff(clusters, 3.0)) == _brute_force_pairs(clusters, 3.0)
    same = np.zeros((5, 3))
    assert len(pairs_within_cutoff(same, 1.0)) == 10
    assert pairs_within_cutoff(np.zeros((0, 3)), 1.0).shape == (0, 2)
    assert pairs_within_cutoff(np.zeros((1, 3)), 1.0).shape == (0, 2)


def _reference_nonbonded_pairs(xyz, restraints, settings):
    """Python rule straight from the nonbonded module docstring, O(N^2)."""
    nb = restraints.nonbonded
    excluded = set(map(tuple, np.sort(nb.excluded_pairs, axis=1).tolist()))
    one_four = set(map(tuple, np.sort(nb.pairs_14, axis=1).tolist())) - excluded
    out = {}
    n = len(xyz)
    for i in range(n):
        for j in range(i + 1, n):
            if (i, j) in excluded:
                continue
            if np.isnan(nb.vdw_radius[i]) or np.isnan(nb.vdw_radius[j]):
                r = settings.default_distance
            else:
                r = nb.vdw_radius[i] + nb.vdw_radius[j]
                if is_donor_acceptor_pair(nb.hbond_type[i], nb.hbond_type[j]):
                    r -= settings.shrink_donor_acceptor
            r = max(settings.minimum_distance, r)
            if (i, j) in one_four:
                r = max(settings.minimum_distance, settings.factor_1_4 * r)
            r *= settings.k_rep
            if np.linalg.norm(xyz[j] - xyz[i]) < r + settings.buffer:
                out[(i, j)] = r
    return out


@pytest.mark.parametrize("buffer, k_rep, with_unknown_radii", [
    (0.0, 1.0, False), (1.0, 1.0, False), (0.5, 0.9, True)])
def test_nonbonded_pairs_match_reference_rule(buffer, k_rep, with_unknown_radii):
    xyz, restraints = random_restraints(n_atoms=60, seed=12, box=11.0)
    if with_unknown_radii:
        vdw = restraints.nonbonded.vdw_radius.copy()
        vdw[::7] = np.nan
        restraints = replace(restraints, nonbonded=replace(restraints.nonbonded,
                                                           vdw_radius=vdw))
    settings = NonbondedSettings(buffer=buffer, k_rep=k_rep)
    packed = pack_restraints(restraints, settings)
    pairs = build_nonbonded_pairs(xyz, packed.nonbonded, settings)
    expected = _reference_nonbonded_pairs(xyz, restraints, settings)
    found = {tuple(p): c for p, c in zip(pairs.pairs.tolist(), pairs.contact.tolist())}
    assert set(found) == set(expected)
    for key, r0 in expected.items():
        assert found[key] == pytest.approx(r0, rel=1e-12)


def _list_and_system(buffer=1.0):
    xyz, restraints = random_restraints(n_atoms=50, seed=5, box=10.0)
    packed = pack_restraints(restraints, NonbondedSettings(buffer=buffer))
    return xyz, packed, packed.neighbour_list()


def test_rebuild_triggers_only_beyond_half_buffer():
    xyz, packed, nbl = _list_and_system(buffer=1.0)
    assert isinstance(nbl, NeighbourList)
    first = nbl.update(xyz)
    assert nbl.n_builds == 1
    moved = xyz.copy()
    moved[7, 0] += 0.49  # below half the buffer
    assert not nbl.needs_rebuild(moved)
    assert nbl.update(moved) is first and nbl.n_builds == 1
    moved[7, 0] = xyz[7, 0] + 0.51  # beyond half the buffer
    assert nbl.needs_rebuild(moved)
    second = nbl.update(moved)
    assert nbl.n_builds == 2 and second is not first
    # the reference point moved with the rebuild
    assert not nbl.needs_rebuild(moved)


def test_list_stays_complete_until_rebuild():
    xyz, packed, nbl = _list_and_system(buffer=1.0)
    rng = np.random.default_rng(8)
    current = xyz.copy()
    for _ in range(30):
        current = current + rng.normal(scale=0.05, size=current.shape)
        pairs = nbl.update(current)
        exact = build_nonbonded_pairs(current, packed.nonbonded,
                                      NonbondedSettings(buffer=0.0))
        d = np.linalg.norm(current[exact.pairs[:, 1]] - current[exact.pairs[:, 0]], axis=1)
        violating = set(map(tuple, exact.pairs[d < exact.contact].tolist()))
        assert violating <= set(map(tuple, pairs.pairs.tolist()))
    assert 1 < nbl.n_builds < 30


def test_batch_list_rebuilds_only_moved_models():
    xyz, packed, _ = _list_and_system()
    batch = np.repeat(xyz[None], 3, axis=0)
    nbl = packed.batch_neighbour_list()
    first = nbl.update(batch)
    assert nbl.n_builds == 3
    assert np.array_equal(first.offsets, np.arange(4) * (first.offsets[1]))
    moved = batch.copy()
    moved[1, 4] += 0.6
    assert list(nbl.stale_models(moved)) == [1]
    second = nbl.update(moved)
    assert nbl.n_builds == 4
    for k in range(3):
        expected = build_nonbonded_pairs(moved[k] if k == 1 else batch[k], packed.nonbonded,
                                         packed.nonbonded_settings)
        rows = slice(second.offsets[k], second.offsets[k + 1])
        np.testing.assert_array_equal(second.pairs[rows], expected.pairs)
    assert nbl.update(moved) is second


def test_cell_list_property_random_sets():
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=40, deadline=None, derandomize=True)
    @given(n=st.integers(0, 120), spread=st.floats(0.5, 40.0), cutoff=st.floats(0.3, 8.0),
           seed=st.integers(0, 2**31 - 1))
    def check(n, spread, cutoff, seed):
        xyz = np.random.default_rng(seed).normal(scale=spread, size=(n, 3))
        found = pairs_within_cutoff(xyz, cutoff)
        assert _as_set(found.reshape(-1, 2)) == _brute_force_pairs(xyz, cutoff)

    assert hypothesis is not None
    check()


def test_non_finite_coordinates_are_rejected():
    xyz = np.zeros((4, 3))
    xyz[2, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        pairs_within_cutoff(xyz, 3.0)


def test_pair_lists_are_checked_against_the_topology():
    from varref.engine.neighbours import BatchNonbondedPairs, NonbondedPairs
    from varref.engine.restraint_target import (
        restraint_value_and_gradient,
        restraint_values_and_gradients_batch,
    )

    xyz, packed, nbl = _list_and_system()
    pairs = nbl.update(xyz)
    assert pairs.n_atoms == len(xyz)
    foreign = NonbondedPairs(np.array([[0, len(xyz)]], np.int64), np.array([3.0]))
    with pytest.raises(ValueError, match="topology has"):
        restraint_value_and_gradient(xyz, packed, foreign)
    with pytest.raises(ValueError, match="out of range"):
        NonbondedPairs(np.array([[0, 5]], np.int64), np.array([3.0]), n_atoms=5)
    with pytest.raises(ValueError, match="int64"):
        NonbondedPairs(np.array([[0, 1]], np.int32), np.array([3.0]))
    # positional construction without n_atoms (as callers concatenating lists do)
    batch = BatchNonbondedPairs(pairs.pairs, pairs.contact,
                                np.array([0, len(pairs)], np.int64))
    values, _ = restraint_values_and_gradients_batch(xyz[None], packed, batch)
    assert values[0] == pytest.approx(restraint_value_and_gradient(xyz, packed, pairs)[0])
    with pytest.raises(ValueError, match="offsets"):
        BatchNonbondedPairs(pairs.pairs, pairs.contact, np.array([0, 1], np.int64))


def test_settings_are_validated():
    with pytest.raises(ValueError):
        NonbondedSettings(factor_1_4=1.2)
    with pytest.raises(ValueError):
        NonbondedSettings(buffer=-1.0)


def test_geometry_term_rebuilds_a_members_list_only_when_it_moved():
    """GeometryTerm keeps one list per problem and checks all members' displacements in one
    kernel call: a member that moved beyond buffer/2 gets a new list, the others keep
    theirs, and members dropping out of the batch (converged problems) keep their lists."""
    from varref.engine.neighbours import max_displacement_sq_members
    from varref.refinement.terms.geometry import GeometryTerm

    xyz, packed, _ = _list_and_system(buffer=1.0)
    reference = np.stack([xyz, xyz + 0.1, xyz])
    moved = reference[[2, 0]].copy()
    moved[0, 3, 0] += 0.7
    np.testing.assert_allclose(max_displacement_sq_members(moved, reference, np.array([2, 0])),
                               [0.49, 0.0], atol=1e-12)

    _, restraints = random_restraints(n_atoms=50, seed=5, box=10.0)
    term = GeometryTerm(restraints, packed)
    batch = np.repeat(xyz[None], 3, axis=0)
    term.evaluate(batch, np.arange(3))
    builds = [term._pair_lists[k].n_builds for k in range(3)]
    assert builds == [1, 1, 1]
    shifted = batch[[0, 2]].copy()
    shifted[1, 4, 0] += 0.6        # problem 2 moves beyond 0.5 Å, problem 0 stays
    values, gradient = term.evaluate(shifted, np.array([0, 2]))
    assert [term._pair_lists[k].n_builds for k in range(3)] == [1, 1, 2]
    # and the result is the single-problem evaluation with a fresh list
    alone = GeometryTerm(restraints, packed).evaluate(shifted[1:], np.array([0]))
    assert values[1] == pytest.approx(alone[0][0], rel=1e-12)
    np.testing.assert_allclose(gradient[1], alone[1][0], rtol=1e-12, atol=1e-12)
