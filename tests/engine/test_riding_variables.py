"""Riding-hydrogen scatter and fold kernels: the numpy formulas bit for bit, and the chain rule."""

import numpy as np
import pytest

from varref.engine.riding_variables import fold_riding, scatter_riding


def _system(seed=0, n_atoms=40, n_rows=3):
    """Atoms, some riding hydrogens (each on a parent that does not ride), one atom that is
    neither a variable nor a rider, and one rider whose parent is not a variable."""
    rng = np.random.default_rng(seed)
    hydrogen = np.array([3, 7, 8, 15, 21, 22, 23, 30])
    parent = np.array([2, 6, 6, 14, 20, 20, 20, 31])  # 31 stays fixed
    variables = np.ones(n_atoms, bool)
    variables[hydrogen] = False
    variables[31] = False
    full = rng.normal(size=(n_rows, n_atoms, 3))
    offsets = rng.normal(scale=1.1, size=(n_rows, len(hydrogen), 3))
    slot = np.full(n_atoms, -1)
    slot[variables] = np.arange(variables.sum())
    return rng, hydrogen, parent, variables, full, offsets, slot[parent]


def test_scatter_and_fold_equal_the_numpy_formulas_bit_for_bit():
    rng, hydrogen, parent, variables, full, offsets, parent_slot = _system()
    x = rng.normal(size=(len(full), 3 * int(variables.sum())))
    expected = full.copy()
    expected[:, variables] = x.reshape(len(full), -1, 3)
    expected[:, hydrogen] = expected[:, parent] + offsets
    got = scatter_riding(x, full.copy(), np.flatnonzero(variables), hydrogen, parent, offsets)
    assert np.array_equal(got, expected)

    gradient = rng.normal(size=full.shape)
    reference = gradient[:, variables].copy()
    moves = parent_slot >= 0
    for row in range(len(gradient)):
        for axis in range(3):
            reference[row, :, axis] += np.bincount(parent_slot[moves],
                                                   gradient[row, hydrogen[moves], axis],
                                                   minlength=reference.shape[1])
    folded = fold_riding(gradient, np.flatnonzero(variables), hydrogen, parent_slot)
    assert np.array_equal(folded, reference)


@pytest.mark.parametrize("seed", [1, 2])
def test_folded_gradient_is_the_gradient_of_the_scattered_function(seed):
    """f(scatter(x)) with f = Σ a·xyz + ½ Σ xyz², its gradient by finite differences."""
    rng, hydrogen, parent, variables, full, offsets, parent_slot = _system(seed, n_rows=2)
    index = np.flatnonzero(variables)
    a = rng.normal(size=full.shape)

    def f(x):
        xyz = scatter_riding(x, full.copy(), index, hydrogen, parent, offsets)
        return np.sum(a * xyz + 0.5 * xyz ** 2, axis=(1, 2))

    x = rng.normal(size=(len(full), 3 * len(index)))
    xyz = scatter_riding(x, full.copy(), index, hydrogen, parent, offsets)
    analytic = fold_riding(a + xyz, index, hydrogen, parent_slot).reshape(len(full), -1)
    step = 1e-6
    numeric = np.zeros_like(x)
    for i in range(x.shape[1]):
        shift = np.zeros_like(x)
        shift[:, i] = step
        numeric[:, i] = (f(x + shift) - f(x - shift)) / (2 * step)
    assert np.allclose(analytic, numeric, rtol=1e-6, atol=1e-6)
    # a rider whose parent is fixed moves with nothing: its gradient reaches no variable
    assert parent_slot[-1] == -1
