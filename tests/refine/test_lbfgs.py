"""The batched L-BFGS: finds minima, treats problems independently, matches scipy's answers."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize, rosen, rosen_der

from varref.refinement.lbfgs import minimise_lbfgs


def rosenbrock_batch(x, members):
    return np.array([rosen(row) for row in x]), np.array([rosen_der(row) for row in x])


def test_rosenbrock_from_several_starts_reaches_the_minimum():
    rng = np.random.default_rng(0)
    x0 = rng.uniform(-2, 2, size=(5, 6))
    result = minimise_lbfgs(rosenbrock_batch, x0, max_iterations=500, relative_tolerance=1e-14,
                            gradient_tolerance=1e-8)
    np.testing.assert_allclose(result.x, 1.0, atol=1e-4)
    assert result.converged.all()
    for start, found in zip(x0, result.x):  # scipy agrees
        reference = minimize(rosen, start, jac=rosen_der, method="L-BFGS-B",
                             options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-10})
        np.testing.assert_allclose(found, reference.x, atol=1e-3)


def test_problems_are_independent_of_their_batch_mates():
    """A problem's path must not depend on which others share the batch."""
    rng = np.random.default_rng(1)
    matrices = [np.diag(rng.uniform(0.1, 10, size=8)) for _ in range(3)]
    centres = rng.normal(size=(3, 8))

    def quadratic(x, members):
        values, grads = [], []
        for row, k in zip(x, members):
            d = row - centres[k]
            values.append(0.5 * d @ matrices[k] @ d)
            grads.append(matrices[k] @ d)
        return np.array(values), np.array(grads)

    together = minimise_lbfgs(quadratic, np.zeros((3, 8)), max_iterations=7)
    alone = minimise_lbfgs(lambda x, m: quadratic(x, np.array([1])), np.zeros((1, 8)), max_iterations=7)
    np.testing.assert_allclose(together.x[1], alone.x[0], rtol=1e-12, atol=1e-14)
    full = minimise_lbfgs(quadratic, np.zeros((3, 8)), max_iterations=200, relative_tolerance=0.0,
                          gradient_tolerance=1e-10)
    np.testing.assert_allclose(full.x, centres, atol=1e-6)


def test_max_step_limits_every_move():
    def far_minimum(x, members):
        d = x - 100.0
        return 0.5 * np.sum(d * d, axis=1), d

    result = minimise_lbfgs(far_minimum, np.zeros((1, 3)), max_iterations=3, max_step=0.5)
    assert np.max(np.abs(result.x)) <= 1.5 + 1e-12
    assert result.value[0] < 0.5 * 3 * 100.0**2


def test_already_converged_problem_is_not_moved():
    def bowl(x, members):
        return 0.5 * np.sum(x * x, axis=1), x.copy()

    result = minimise_lbfgs(bowl, np.zeros((2, 4)))
    assert result.converged.all() and np.all(result.iterations == 0)
    assert result.evaluations == 1


def _reference_direction(g, pairs):
    """Textbook two-loop recursion (Nocedal & Wright Alg. 7.4) over pairs oldest→newest."""
    q, alphas = g.copy(), []
    for s, y in reversed(pairs):
        a = (s @ q) / (s @ y)
        alphas.append(a)
        q -= a * y
    gamma = (pairs[-1][0] @ pairs[-1][1]) / (pairs[-1][1] @ pairs[-1][1]) if pairs else 1.0
    r = gamma * q
    for (s, y), a in zip(pairs, reversed(alphas)):
        r += (a - (y @ r) / (s @ y)) * s
    return -r


def test_ring_buffer_direction_matches_the_textbook_recursion():
    """The kernel reads each problem's pairs from its ring (any head, any fill, any subset of
    problems) and gives the textbook direction; it is exactly quasi-Newton on a quadratic:
    with all n pairs of a quadratic stored, -H g is the Newton step."""
    from varref.engine.lbfgs_direction import lbfgs_direction

    rng = np.random.default_rng(7)
    n_problems, m, n = 4, 5, 6
    s_hist, y_hist = np.zeros((n_problems, m, n)), np.zeros((n_problems, m, n))
    rho_hist = np.zeros((n_problems, m))
    n_stored = np.array([0, 2, 5, 5])
    head = np.array([3, 4, 2, 0])
    matrix = np.diag(rng.uniform(0.5, 4.0, n))
    pairs = {}
    for k in range(n_problems):
        pairs[k] = []
        for t in range(n_stored[k]):  # oldest first
            s = rng.normal(size=n)
            y = matrix @ s if k == 3 else s + 0.1 * rng.normal(size=n)
            slot = (head[k] - n_stored[k] + t) % m
            s_hist[k, slot], y_hist[k, slot], rho_hist[k, slot] = s, y, 1.0 / (s @ y)
            pairs[k].append((s, y))
    members = np.array([3, 1, 0])
    gradient = rng.normal(size=(3, n))
    direction = lbfgs_direction(gradient, members, s_hist, y_hist, rho_hist, n_stored, head)
    for row, k in enumerate(members):
        np.testing.assert_allclose(direction[row], _reference_direction(gradient[row], pairs[k]),
                                   rtol=1e-12, atol=1e-12)
    # problem 3 holds 5 pairs of a 6-D quadratic: not all of n, so only check the subspace
    # property of BFGS: H y_j = s_j for the newest pair
    newest_s, newest_y = pairs[3][-1]
    h_y = -lbfgs_direction(newest_y[None], np.array([3]), s_hist, y_hist, rho_hist, n_stored, head)[0]
    np.testing.assert_allclose(h_y, newest_s, rtol=1e-10, atol=1e-12)


def test_accept_kernel_equals_the_numpy_bookkeeping():
    """The numba update (accept, store pairs in the rings, stop finished problems) does what
    the numpy statements it replaced did, on a random mid-run state."""
    from varref.engine.lbfgs_update import lbfgs_accept

    rng = np.random.default_rng(3)
    n_problems, history, n = 6, 4, 7
    state = {"x": rng.normal(size=(n_problems, n)), "value": rng.normal(size=n_problems),
             "gradient": rng.normal(size=(n_problems, n)),
             "s_hist": rng.normal(size=(n_problems, history, n)),
             "y_hist": rng.normal(size=(n_problems, history, n)),
             "rho_hist": rng.normal(size=(n_problems, history)),
             "n_stored": np.array([0, 1, 4, 4, 2, 3]), "head": np.array([0, 1, 0, 2, 2, 3]),
             "iterations": np.arange(n_problems) * 3, "active": np.ones(n_problems, bool),
             "converged": np.zeros(n_problems, bool)}
    members = np.array([0, 2, 3, 4, 5])
    new_x = state["x"][members] + rng.normal(scale=0.1, size=(5, n))
    new_gradient = rng.normal(scale=0.5, size=(5, n))
    new_gradient[1] = 1e-9                                   # small gradient: converged
    new_gradient[3] = state["gradient"][4] - 0.3 * (new_x[3] - state["x"][4])  # s·y < 0
    new_value = state["value"][members] - np.array([0.5, 0.2, 1e-12, 0.3, 0.1])  # [2]: stalled
    accepted = np.array([True, True, True, True, False])      # [4]: failed line search
    tolerance, gradient_tolerance = 1e-7, 1e-6

    expected = {key: value.copy() for key, value in state.items()}
    e = expected
    s, y = new_x - e["x"][members], new_gradient - e["gradient"][members]
    sy = np.einsum("kn,kn->k", s, y)
    decrease = e["value"][members] - new_value
    scale = np.maximum(np.maximum(np.abs(e["value"][members]), np.abs(new_value)), 1.0)
    e["x"][members] = np.where(accepted[:, None], new_x, e["x"][members])
    e["value"][members] = np.where(accepted, new_value, e["value"][members])
    e["gradient"][members] = np.where(accepted[:, None], new_gradient, e["gradient"][members])
    e["iterations"][members] += 1
    for local in np.flatnonzero(accepted & (sy > 1e-10 * np.einsum("kn,kn->k", y, y))):
        k, slot = members[local], e["head"][members[local]]
        e["s_hist"][k, slot], e["y_hist"][k, slot] = s[local], y[local]
        e["rho_hist"][k, slot] = 1.0 / sy[local]
        e["head"][k] = (slot + 1) % history
        e["n_stored"][k] = min(e["n_stored"][k] + 1, history)
    small = np.max(np.abs(e["gradient"][members]), axis=1) < gradient_tolerance
    stalled = accepted & (decrease <= tolerance * scale)
    e["converged"][members] = small | stalled
    e["active"][members[small | stalled | ~accepted]] = False

    lbfgs_accept(members, new_x, new_value, new_gradient, accepted, state["x"], state["value"],
                 state["gradient"], state["s_hist"], state["y_hist"], state["rho_hist"],
                 state["n_stored"], state["head"], state["iterations"], state["active"],
                 state["converged"], tolerance, gradient_tolerance)
    for key in state:
        np.testing.assert_allclose(state[key], expected[key], rtol=1e-12, err_msg=key)
    # the cases the state was built to contain
    assert expected["converged"].tolist() == [False, False, True, True, False, False]
    assert expected["active"].tolist() == [True, True, False, False, True, False]
    assert expected["n_stored"][4] == 2  # s·y < 0: no pair stored
