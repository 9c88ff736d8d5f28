"""The trajectory prior and the joint series objective (varref/refinement/trajectory.py)."""

from __future__ import annotations

import numpy as np
import pytest

from varref.refinement.options import RefineOptions
from varref.refinement.trajectory import (JointObjective, TrajectoryPrior, automatic_prior_weight,
                                          data_curvature, default_period)


def numerical_gradient(function, x: np.ndarray, step: float = 1e-5) -> np.ndarray:
    gradient = np.zeros_like(x)
    flat, out = x.reshape(-1), gradient.reshape(-1)
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + step
        up = function(x)
        flat[i] = saved - step
        down = function(x)
        flat[i] = saved
        out[i] = (up - down) / (2 * step)
    return gradient


@pytest.mark.parametrize("order", [1, 2])
def test_prior_gradient_matches_finite_differences(order):
    rng = np.random.default_rng(3)
    trajectory = rng.normal(size=(2, 6, 4, 3))
    prior = TrajectoryPrior(0.7, order)
    values, gradient = prior.evaluate(trajectory)
    for k in range(2):
        expected = numerical_gradient(lambda x: prior.evaluate(x[np.newaxis])[0][0],
                                      trajectory[k].copy())
        np.testing.assert_allclose(gradient[k], expected, rtol=1e-6, atol=1e-7)
    # the value is λ Σ |Δ^p x|²
    d = np.diff(trajectory, n=order, axis=1)
    np.testing.assert_allclose(values, 0.7 * np.sum(d ** 2, axis=(1, 2, 3)))


def test_second_differences_leave_uniform_motion_free_first_differences_do_not():
    rng = np.random.default_rng(0)
    start, velocity = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    linear = (start + np.arange(7)[:, None, None] * velocity)[np.newaxis]  # (1, 7, 5, 3)
    curvature_values, curvature_gradient = TrajectoryPrior(10.0, 2).evaluate(linear)
    assert curvature_values[0] == pytest.approx(0.0, abs=1e-9)
    assert np.abs(curvature_gradient).max() < 1e-9
    motion_values, _ = TrajectoryPrior(10.0, 1).evaluate(linear)
    assert motion_values[0] > 1.0
    # a bent path costs under the second-difference prior
    bent = linear.copy()
    bent[0, 3] += 0.5
    assert TrajectoryPrior(10.0, 2).evaluate(bent)[0][0] > 1.0


def test_automatic_weight_halves_the_amplitude_at_the_cut_off_period():
    """The quadratic model of the joint objective, Σ c (x_f − y_f)² + λ Σ (Δ²x_f)², filters a
    sinusoid of the cut-off period to half its amplitude, slower ones less, faster ones more."""
    n, c = 400, 3.0
    d2 = np.diff(np.eye(n), n=2, axis=0)
    frames = np.arange(n)
    for period in (4.0, 5.5, 10.0):
        lam = automatic_prior_weight(c / 20.0, 20.0, period)  # curvature × weight = c
        smoother = np.linalg.solve(c * np.eye(n) + lam * d2.T @ d2, c * np.eye(n))
        gains = {}
        for p in (period, 2 * period, period / 1.5):
            y = np.sin(2 * np.pi * frames / p)
            x = smoother @ y
            middle = slice(n // 4, 3 * n // 4)  # away from the free ends
            gains[p] = np.sqrt(np.mean(x[middle] ** 2) / np.mean(y[middle] ** 2))
        assert gains[period] == pytest.approx(0.5, abs=0.02)
        assert gains[2 * period] > 0.85 and gains[period / 1.5] < 0.3
    assert default_period(11) == 5.5 and default_period(4) == 3.0


@pytest.fixture(scope="module")
def helix_with_map():
    from varref.example_data import example_helix
    from varref.restraints import build_restraints
    from varref.simulate import simulate_map

    model = example_helix(6)
    restraints = build_restraints(model)
    density = simulate_map(model, 3.0, snr=5.0, seed=1).prepared(model.xyz, 5.0, None)
    return model, restraints, density


def test_data_curvature_is_the_mean_diagonal_second_derivative(helix_with_map):
    from varref.engine.map_target import map_target_value_gradient_batched, map_target_weights

    model, _, density = helix_with_map
    weights = map_target_weights(model.atomic_number, model.is_hydrogen)
    rng = np.random.default_rng(2)
    xyz = model.xyz + rng.normal(scale=0.2, size=model.xyz.shape)

    def value(coordinates):
        return map_target_value_gradient_batched(density.data, density.origin, density.voxel_size,
                                                 coordinates[np.newaxis], weights, "tricubic")[0][0]

    # T_map is a sum of one-atom terms: its Laplacian summed over atoms from values alone
    eps, laplacian = 1e-3, 0.0
    for axis in range(3):
        up, down = xyz.copy(), xyz.copy()
        up[:, axis] += eps
        down[:, axis] -= eps
        laplacian += (value(up) + value(down) - 2 * value(xyz)) / eps ** 2
    expected = laplacian / (3 * np.count_nonzero(weights > 0))
    assert data_curvature(model, density, xyz, step=1e-3) == pytest.approx(expected, rel=1e-3)
    assert data_curvature(model, density, model.xyz) > 0  # atoms on their peaks


def test_joint_objective_gradient_matches_finite_differences(helix_with_map):
    """Frames are coupled only by the prior, each frame reads its own map."""
    from dataclasses import replace

    from varref.engine.restraint_target import pack_restraints
    from varref.refinement.terms import MACRO, TermSetup, build_data_terms, build_restraint_terms

    model, restraints, density = helix_with_map
    shifted = replace(density, data=np.roll(density.data, 2, axis=2))  # a second, different map
    options = RefineOptions(resolution=3.0, weight=5.0)
    packed = pack_restraints(restraints)
    rng = np.random.default_rng(4)
    trajectory = model.xyz[np.newaxis, np.newaxis] + rng.normal(scale=0.1, size=(2, 3, model.n_atoms, 3))
    setup = TermSetup(model, restraints, packed, None, options, trajectory.reshape(-1, model.n_atoms, 3))
    frame_terms = [build_data_terms(TermSetup(model, restraints, packed, m, options, trajectory[:, f]),
                                    MACRO) for f, m in enumerate([density, shifted, density])]
    objective = JointObjective(frame_terms, build_restraint_terms(setup), TrajectoryPrior(2.0), 5.0,
                               model.n_atoms)
    members = np.arange(2)
    values, gradient = objective.evaluate(trajectory, members)
    # a few coordinates of every frame of trajectory 1 (the full FD would be slow)
    atoms = [0, 7, 20]
    for f in range(3):
        for atom in atoms:
            for axis in range(3):
                step = 1e-5
                up, down = trajectory.copy(), trajectory.copy()
                up[1, f, atom, axis] += step
                down[1, f, atom, axis] -= step
                numeric = (objective.evaluate(up, members)[0][1]
                           - objective.evaluate(down, members)[0][1]) / (2 * step)
                assert gradient[1, f, atom, axis] == pytest.approx(numeric, rel=1e-4, abs=1e-4)
    # the value is the sum of its parts, frame 1 sees the shifted map
    parts: dict = {}
    objective.evaluate(trajectory, members, parts)
    np.testing.assert_allclose(values, parts["data"] + parts["restraints"] + parts["prior"])
    swapped = JointObjective([frame_terms[0], frame_terms[0], frame_terms[2]], objective.restraint_terms,
                             TrajectoryPrior(2.0), 5.0, model.n_atoms)
    assert not np.allclose(swapped.evaluate(trajectory, members)[0], values)


@pytest.mark.parametrize("frame", [0, 1, 3, 5])
def test_neighbour_prior_is_the_joint_prior_seen_from_one_frame(frame):
    """Its gradient is the joint prior's gradient at that frame (FD-checked too), and its
    value differs from the joint prior's only by triplets without the frame (constants)."""
    from varref.refinement.trajectory import NeighbourPrior

    rng = np.random.default_rng(frame)
    trajectory = rng.normal(size=(2, 6, 4, 3))
    joint = TrajectoryPrior(0.8)
    neighbours = {o: trajectory[:, frame + o] for o in (-2, -1, 1, 2) if 0 <= frame + o < 6}
    prior = NeighbourPrior(0.8, frame, 6, neighbours)
    members = np.array([0, 1])
    values, gradient = prior.evaluate(trajectory[:, frame].copy(), members)
    np.testing.assert_allclose(gradient, joint.evaluate(trajectory)[1][:, frame], rtol=1e-12)
    own = trajectory[1, frame].copy()
    numeric = numerical_gradient(lambda x: prior.evaluate(x[np.newaxis], members[1:])[0][0], own)
    np.testing.assert_allclose(gradient[1], numeric, rtol=1e-6, atol=1e-7)
    moved = trajectory.copy()
    moved[:, frame] += rng.normal(size=moved[:, frame].shape)
    np.testing.assert_allclose(prior.evaluate(moved[:, frame].copy(), members)[0] - values,
                               joint.evaluate(moved)[0] - joint.evaluate(trajectory)[0])


@pytest.fixture(scope="module")
def hydrogenated_helix():
    """A poly-Ala helix with its hydrogens, restraints, riding model and a 3 Å map."""
    from varref.example_data import example_helix
    from varref.refinement.riding import RidingHydrogens
    from varref.restraints import build_restraints
    from varref.restraints.hydrogens import add_riding_hydrogens
    from varref.simulate import simulate_map

    model = add_riding_hydrogens(example_helix(6))
    restraints = build_restraints(model)
    density = simulate_map(model, 3.0, snr=8.0, seed=2).prepared(model.xyz, 5.0, None)
    return model, restraints, RidingHydrogens.from_model(model, restraints), density


def test_joint_objective_with_riding_hydrogens_matches_finite_differences(hydrogenated_helix):
    """With riding hydrogens the joint variables are the heavy atoms of every frame; a
    hydrogen follows its parent and its gradient (data, restraints, prior) goes to it."""
    from varref.engine.restraint_target import pack_restraints
    from varref.refinement.terms import MACRO, TermSetup, build_data_terms, build_restraint_terms

    model, restraints, riding, density = hydrogenated_helix
    kept = riding.restraints(restraints)
    packed = pack_restraints(kept)
    options = RefineOptions(resolution=3.0, weight=5.0)
    rng = np.random.default_rng(7)
    trajectory = riding.place(model.xyz[np.newaxis, np.newaxis]
                              + rng.normal(scale=0.1, size=(2, 3, model.n_atoms, 3)))
    setup = TermSetup(model, kept, packed, None, options, trajectory.reshape(-1, model.n_atoms, 3))
    frame_terms = [build_data_terms(TermSetup(model, kept, packed, density, options, trajectory[:, f]),
                                    MACRO) for f in range(3)]
    objective = JointObjective(frame_terms, build_restraint_terms(setup), TrajectoryPrior(2.0), 5.0,
                               model.n_atoms, riding=riding, start=trajectory)
    x = objective.pack(trajectory)
    assert x.shape == (2, 3 * 3 * int((~model.is_hydrogen).sum()))
    np.testing.assert_array_equal(objective.unpack(x), trajectory)
    members = np.array([1])
    _, gradient = objective(x[1:], members)
    for index in rng.choice(x.shape[1], 12, replace=False):
        up, down = x[1:].copy(), x[1:].copy()
        up[0, index] += 1e-5
        down[0, index] -= 1e-5
        numeric = (objective(up, members)[0][0] - objective(down, members)[0][0]) / 2e-5
        assert gradient[0, index] == pytest.approx(numeric, rel=1e-4, abs=1e-4)
    # a hydrogen's own gradient reached its parent: folding changes the heavy atoms' gradient
    plain = objective.evaluate(trajectory[1:], members)[1][:, :, ~model.is_hydrogen]
    assert not np.allclose(gradient.reshape(plain.shape), plain)


def test_joint_refinement_lets_hydrogens_ride(hydrogenated_helix, caplog):
    """refine_joint with riding hydrogens (the default): hydrogens end at their ideal places
    on their refined parents, no warning, and the heavy atoms come as near the truth as with
    restrained hydrogens or nearer."""
    import logging

    from varref.refinement.trajectory import refine_joint

    model, restraints, riding, density = hydrogenated_helix
    rng = np.random.default_rng(3)
    start = riding.place(model.xyz[np.newaxis, np.newaxis]
                         + rng.normal(scale=0.3, size=(1, 3, model.n_atoms, 3)))
    heavy = ~model.is_hydrogen

    def error(xyz):
        return float(np.sqrt(np.mean(np.sum((xyz[..., heavy, :] - model.xyz[heavy]) ** 2, -1))))

    results = {}
    for hydrogens in ("riding", "restrained"):
        options = RefineOptions(resolution=3.0, weight=5.0, macro_cycles=2, iterations=40,
                                hydrogens=hydrogens, ramachandran=False, rotamer=False)
        with caplog.at_level(logging.WARNING, logger="varref"):
            results[hydrogens] = refine_joint(model, [density] * 3, restraints, start, options,
                                              prior_weight=1.0)
    assert "hydrogens" not in caplog.text
    ridden = results["riding"].xyz
    np.testing.assert_allclose(ridden, riding.place(ridden), atol=1e-9)
    assert error(ridden) < 0.6 * error(start)
    assert error(ridden) <= error(results["restrained"].xyz) + 0.01
