"""L-BFGS for K independent problems that are evaluated together.

The engine evaluates K models sharing one topology in a single call, so the minimiser keeps
K separate L-BFGS states (histories, steps, convergence) but asks for all their values and
gradients at once. With K = 1 it is ordinary L-BFGS (Nocedal & Wright 2006, Alg. 7.4/7.5)
with a backtracking Armijo line search; the curvature pair is stored only when
``s·y > 0``, which keeps the inverse-Hessian approximation positive definite.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from varref.engine.lbfgs_direction import lbfgs_direction, row_dots
from varref.engine import lbfgs_update as settings
from varref.engine.lbfgs_update import lbfgs_accept

#: ``objective(x, members) -> (values (k,), gradients (k, n))`` for the rows ``x`` (k, n)
#: that belong to problems ``members`` (k,) — only unfinished problems are evaluated.
BatchObjective = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class LbfgsResult:
    """Outcome per problem: ``x`` (K, n), ``value`` (K,), ``iterations`` (K,),
    ``converged`` (K,) bool, and ``evaluations``: the number of objective calls."""

    x: np.ndarray
    value: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray
    evaluations: int


def minimise_lbfgs(
    objective: BatchObjective,
    x0: np.ndarray,
    max_iterations: int = 100,
    history: int = settings.HISTORY,
    relative_tolerance: float = settings.RELATIVE_TOLERANCE,
    gradient_tolerance: float = settings.GRADIENT_TOLERANCE,
    max_step: float | None = None,
) -> LbfgsResult:
    """Minimise K independent objectives with L-BFGS.

    Parameters
    ----------
    objective
        See :data:`BatchObjective`.
    x0
        (K, n) starting points.
    max_iterations
        Iterations per problem.
    history
        Number of correction pairs kept (m).
    relative_tolerance
        Stop a problem when ``(f_old - f_new) / max(|f_old|, |f_new|, 1)`` falls below this
        (scipy's ``factr`` criterion).
    gradient_tolerance
        Stop a problem when its largest gradient component is below this.
    max_step
        Largest displacement of any coordinate in one step (Å for refinement): the first
        step along a steepest-descent direction, and any step, is scaled down to it.
    """
    x = np.array(x0, dtype=np.float64, copy=True)
    n_problems, n = x.shape
    all_members = np.arange(n_problems)
    value, gradient = objective(x, all_members)
    evaluations = 1
    # ring buffers: problem k's newest pair sits at slot (head[k] - 1) mod history
    s_hist = np.zeros((n_problems, history, n))
    y_hist = np.zeros((n_problems, history, n))
    rho_hist = np.zeros((n_problems, history))
    n_stored = np.zeros(n_problems, dtype=np.int64)
    head = np.zeros(n_problems, dtype=np.int64)
    iterations = np.zeros(n_problems, dtype=np.int64)
    converged = np.max(np.abs(gradient), axis=1) < gradient_tolerance
    active = ~converged

    for _ in range(max_iterations):
        members = np.flatnonzero(active)
        if len(members) == 0:
            break
        current = gradient[members]
        direction = lbfgs_direction(current, members, s_hist, y_hist, rho_hist, n_stored, head)
        slope = row_dots(direction, current)
        # a non-descent direction (possible after a bad curvature pair): restart from -g
        uphill = slope >= 0
        if uphill.any():
            direction[uphill] = -current[uphill]
            n_stored[members[uphill]] = 0
            slope[uphill] = -row_dots(direction[uphill], direction[uphill])
        step = np.ones(len(members))
        first = n_stored[members] == 0
        if max_step is not None:
            largest = np.max(np.abs(direction), axis=1)
            too_long = largest > max_step
            step[too_long] = max_step / largest[too_long]
        elif first.any():
            step[first] = 1.0 / np.maximum(np.linalg.norm(direction[first], axis=1), 1e-12)

        new_x, new_value, new_gradient, accepted, calls = _backtrack(
            objective, x[members], value[members], direction, slope, step, members)
        evaluations += calls
        # accept, store the pair (s, y) when s·y > 0, stop the finished problems (one kernel)
        lbfgs_accept(members, new_x, new_value, new_gradient, accepted, x, value, gradient,
                     s_hist, y_hist, rho_hist, n_stored, head, iterations, active, converged,
                     relative_tolerance, gradient_tolerance)

    return LbfgsResult(x, value, iterations, converged, evaluations)


def _backtrack(objective, x, value, direction, slope, step, members,
               armijo: float = settings.ARMIJO, shrink: float = settings.SHRINK,
               max_tries: int = settings.MAX_TRIES):
    """Armijo backtracking for every problem; each round evaluates only the unfinished ones."""
    k_count, n = x.shape
    new_x = x.copy()
    new_value = value.copy()
    new_gradient = np.zeros((k_count, n))
    accepted = np.zeros(k_count, dtype=bool)
    pending = np.arange(k_count)
    calls = 0
    for _ in range(max_tries):
        trial = x[pending] + step[pending, None] * direction[pending]
        f, g = objective(trial, members[pending])
        calls += 1
        ok = f <= value[pending] + armijo * step[pending] * slope[pending]
        done = pending[ok]
        new_x[done] = trial[ok]
        new_value[done] = f[ok]
        new_gradient[done] = g[ok]
        accepted[done] = True
        pending = pending[~ok]
        if len(pending) == 0:
            break
        step[pending] *= shrink
    return new_x, new_value, new_gradient, accepted, calls
