"""L-BFGS bookkeeping after a line search, for K problems at once (numba kernel).

For each problem that took part in an iteration: accept its line-search point (when the
search succeeded), store the correction pair ``s = x_new - x``, ``y = g_new - g`` in its ring
buffer when ``s·y > 1e-10 y·y`` (which keeps the inverse-Hessian approximation positive
definite), and decide whether it is finished (small gradient, stalled decrease, or a failed
line search). In numpy this is a dozen (k, n) temporaries and a Python loop over the problems
per iteration, which cost as much as the objective on the weight search's small segments.
"""

from __future__ import annotations

from numba import njit

__all__ = ["lbfgs_accept", "HISTORY", "RELATIVE_TOLERANCE", "GRADIENT_TOLERANCE", "ARMIJO",
           "SHRINK", "MAX_TRIES"]

# The settings of both minimisers (varref.refinement.lbfgs and the weight search's fused one
# in varref.engine.fused_lbfgs), defined once so that they cannot drift apart.
#: Correction pairs kept (m).
HISTORY = 10
#: A problem stops when its relative decrease falls below this (scipy's ``factr`` criterion).
RELATIVE_TOLERANCE = 1e-7
#: A problem stops when its largest gradient component falls below this.
GRADIENT_TOLERANCE = 1e-6
#: Armijo sufficient-decrease constant, step shrink factor and tries of the line search.
ARMIJO = 1e-4
SHRINK = 0.5
MAX_TRIES = 30


@njit(nogil=True, cache=True)
def _accept_kernel(members, new_x, new_value, new_gradient, accepted, x, value, gradient,
                   s_hist, y_hist, rho_hist, n_stored, head, iterations, active, converged,
                   relative_tolerance, gradient_tolerance):
    history = s_hist.shape[1]
    n = x.shape[1]
    for row in range(members.shape[0]):
        k = members[row]
        iterations[k] += 1
        stalled = False
        if accepted[row]:
            sy = 0.0
            yy = 0.0
            for i in range(n):
                s = new_x[row, i] - x[k, i]
                y = new_gradient[row, i] - gradient[k, i]
                sy += s * y
                yy += y * y
            if sy > 1e-10 * yy:
                slot = head[k]  # the oldest pair's slot once the ring is full
                for i in range(n):
                    s_hist[k, slot, i] = new_x[row, i] - x[k, i]
                    y_hist[k, slot, i] = new_gradient[row, i] - gradient[k, i]
                rho_hist[k, slot] = 1.0 / sy
                head[k] = (slot + 1) % history
                n_stored[k] = min(n_stored[k] + 1, history)
            scale = max(max(abs(value[k]), abs(new_value[row])), 1.0)
            stalled = value[k] - new_value[row] <= relative_tolerance * scale
            value[k] = new_value[row]
            for i in range(n):
                x[k, i] = new_x[row, i]
                gradient[k, i] = new_gradient[row, i]
        largest = 0.0
        for i in range(n):
            largest = max(largest, abs(gradient[k, i]))
        small_gradient = largest < gradient_tolerance
        converged[k] = small_gradient or stalled
        if small_gradient or stalled or not accepted[row]:
            active[k] = False


def lbfgs_accept(members, new_x, new_value, new_gradient, accepted, x, value, gradient, s_hist,
                 y_hist, rho_hist, n_stored, head, iterations, active, converged,
                 relative_tolerance: float, gradient_tolerance: float) -> None:
    """Update the minimiser's state in place after one iteration of ``members``.

    Parameters
    ----------
    members : (k,) int64
        Problems of this iteration (row r of the ``new_*`` arrays belongs to ``members[r]``).
    new_x, new_gradient : (k, n) float64; new_value : (k,) float64; accepted : (k,) bool
        Line-search results.
    x, gradient : (K, n) float64; value : (K,) float64
        Current points, updated where accepted.
    s_hist, y_hist : (K, m, n); rho_hist : (K, m); n_stored, head, iterations : (K,) int64
        Histories (ring buffers) and counters, updated.
    active, converged : (K,) bool
        Updated: a problem stops on a small gradient, a stalled decrease or a failed search.
    """
    _accept_kernel(members, new_x, new_value, new_gradient, accepted, x, value, gradient, s_hist,
                   y_hist, rho_hist, n_stored, head, iterations, active, converged,
                   float(relative_tolerance), float(gradient_tolerance))
