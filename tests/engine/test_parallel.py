"""Model-density kernels in threads: the same numbers as one thread, the setting, the errors."""

from __future__ import annotations

import numpy as np
import pytest

from varref.cli import main
from varref.engine import parallel
from varref.engine.adp import b_gradient_from_map_gradient, cc_b_value_gradient
from varref.engine.cc_target import cc_value_gradient, correlation_data
from varref.engine.model_map import (
    atom_gaussians,
    coordinate_gradient_from_map_gradient,
    cutoff_radii,
    model_map,
    resolution_blur,
    scattering_coefficients,
)
from varref.example_data import example_helix
from varref.model import write_model


@pytest.fixture
def restore_threads():
    before = parallel.configured_threads()
    yield
    parallel.set_threads(before)


@pytest.fixture(scope="module")
def atoms():
    """1,000 atoms in a 40 Å box (enough for 4 ranges of MIN_ATOMS_PER_THREAD), B 10-150."""
    rng = np.random.default_rng(11)
    n = 1000
    xyz = rng.uniform(6.0, 34.0, (n, 3))
    elements = rng.choice(["C", "N", "O", "S"], n)
    coeff_a, coeff_b = scattering_coefficients(elements)
    b_iso = rng.uniform(10.0, 150.0, n)
    blur = resolution_blur(3.0)
    amplitude, exponent = atom_gaussians(coeff_a, coeff_b, b_iso, None, blur)
    radius = cutoff_radii(exponent, 3e-3)
    origin, voxel, shape = np.zeros(3), np.array([1.0, 0.9, 1.1]), (37, 45, 40)
    target = model_map(xyz + rng.normal(0.0, 0.4, xyz.shape), shape, origin, voxel, coeff_a,
                       coeff_b, b_iso, blur=blur, dtype=np.float64)
    target += rng.normal(0.0, 0.05 * target.std(), shape)
    return dict(xyz=xyz, coeff_a=coeff_a, coeff_b=coeff_b, b_iso=b_iso, blur=blur,
                amplitude=amplitude, exponent=exponent, radius=radius, origin=origin,
                voxel=voxel, shape=shape, target=target)


def with_threads(count, function, *args, **kwargs):
    parallel.set_threads(count)
    return function(*args, **kwargs)


def test_atom_parts_cover_the_atoms_in_order_with_balanced_cost():
    rng = np.random.default_rng(0)
    radius = rng.uniform(2.0, 9.0, 5000)
    parts = parallel.atom_parts(radius, 3)
    assert parts[0][0] == 0 and parts[-1][1] == 5000
    assert all(a[1] == b[0] for a, b in zip(parts[:-1], parts[1:]))
    costs = [np.sum(radius[lo:hi] ** 3) for lo, hi in parts]
    assert len(parts) == 3 and max(costs) / min(costs) < 1.01
    # few atoms: no more ranges than MIN_ATOMS_PER_THREAD allows; all-zero radii: one range
    assert parallel.atom_parts(radius[:300], 4) == [(0, 300)]
    assert len(parallel.atom_parts(radius[:2 * parallel.MIN_ATOMS_PER_THREAD], 4)) == 2
    assert parallel.atom_parts(np.zeros(1000), 4) == [(0, 1000)]


@pytest.mark.parametrize("count", [2, 3])
def test_threaded_model_map_and_gradients_equal_one_thread(atoms, restore_threads, count):
    a = atoms
    args = (a["xyz"], a["shape"], a["origin"], a["voxel"], a["coeff_a"], a["coeff_b"], a["b_iso"])
    single = with_threads(1, model_map, *args, blur=a["blur"], cutoff=3e-3, dtype=np.float64)
    threaded = with_threads(count, model_map, *args, blur=a["blur"], cutoff=3e-3,
                            dtype=np.float64)
    # slabs of z planes: every point sums the same atoms in the same order
    assert len(parallel.slab_parts(a["xyz"][:, 2], a["radius"], 0.0, a["voxel"][2],
                                   a["shape"][0], count)) == count
    np.testing.assert_array_equal(threaded, single)

    grad_args = (a["target"], a["origin"], a["voxel"], a["xyz"], a["amplitude"],
                 a["exponent"], a["radius"])
    for function in (coordinate_gradient_from_map_gradient, b_gradient_from_map_gradient):
        # gathers: every atom's row is computed by exactly the same code
        np.testing.assert_array_equal(with_threads(count, function, *grad_args),
                                      with_threads(1, function, *grad_args))


def test_threaded_cc_targets_equal_one_thread(atoms, restore_threads):
    a = atoms
    data = correlation_data(a["target"], a["origin"], a["voxel"], a["target"] > 0.3 * a["target"].max())
    results = {}
    for count in (1, 2):
        parallel.set_threads(count)
        results[count] = (cc_value_gradient(a["xyz"], data, a["coeff_a"], a["coeff_b"],
                                            a["b_iso"], blur=a["blur"]),
                          cc_b_value_gradient(a["xyz"], data, a["coeff_a"], a["coeff_b"],
                                              a["b_iso"], blur=a["blur"]))
    for (v1, g1), (v2, g2) in zip(results[1], results[2]):
        assert v2 == v1
        np.testing.assert_array_equal(g2, g1)


def test_masked_sums_in_chunks_on_threads_equal_one_thread(atoms, restore_threads, monkeypatch):
    """More mask chunks than threads, taken by whichever thread is free: the same numbers as
    one thread, because the chunks fix the sums and they are combined in chunk order."""
    from varref.engine import cc_target

    a = atoms
    monkeypatch.setattr(cc_target, "MASK_CHUNK", 997)
    data = correlation_data(a["target"], a["origin"], a["voxel"], a["target"] > 0.1 * a["target"].max())
    assert len(data.chunks) > 4
    results = {}
    for count in (1, 2, 3):
        parallel.set_threads(count)
        results[count] = cc_value_gradient(a["xyz"], data, a["coeff_a"], a["coeff_b"],
                                           a["b_iso"], blur=a["blur"])
    for count in (2, 3):
        assert results[count][0] == results[1][0]
        np.testing.assert_array_equal(results[count][1], results[1][1])


@pytest.mark.parametrize("count", [1, 2, 3])
def test_run_chunks_runs_every_chunk_once_and_raises_after_the_others(restore_threads, count):
    parallel.set_threads(count)
    chunks = [(j, j + 1) for j in range(11)]
    seen = []
    parallel.run_chunks(lambda lo, hi, j: seen.append((lo, hi, j)), chunks)
    assert sorted(seen) == [(lo, hi, j) for j, (lo, hi) in enumerate(chunks)]
    finished = []

    def work(lo, hi, j):
        if j == 3:
            raise RuntimeError("chunk 3 failed")
        finished.append(j)

    with pytest.raises(RuntimeError, match="chunk 3 failed"):
        parallel.run_chunks(work, chunks)
    # the failing thread stops taking chunks; the others take the rest
    if count == 1:
        assert finished == [0, 1, 2]
    else:
        assert sorted(finished) == [j for j in range(11) if j != 3]


def test_slab_parts_cover_the_planes_with_balanced_cost():
    rng = np.random.default_rng(1)
    z = np.concatenate([rng.uniform(10.0, 20.0, 3000), rng.uniform(40.0, 80.0, 1000)])
    radius = np.full(len(z), 3.0)
    parts = parallel.slab_parts(z, radius, 0.0, 1.0, 100, 2)
    assert parts[0][0] == 0 and parts[-1][1] == 100 and parts[0][1] == parts[1][0]
    # three quarters of the atoms sit in 10-20 Å: the cut falls inside that band
    assert 12 <= parts[0][1] <= 19
    # atoms outside the grid or with NaN coordinates cost nothing; too few planes: fewer slabs
    z[:10] = np.nan
    assert parallel.slab_parts(z, radius, 0.0, 1.0, 100, 2)[0][1] == parts[0][1]
    assert parallel.slab_parts(z, radius, 0.0, 1.0, 1, 4) == [(0, 1)]
    assert parallel.slab_parts(z, radius, 500.0, 1.0, 100, 2) == [(0, 100)]


def test_refinement_does_not_depend_on_the_thread_count(monkeypatch, restore_threads):
    from varref.api import refine
    from varref.simulate import simulate_map

    model = example_helix(12)
    density = simulate_map(model, 3.0)
    start = model.xyz + np.random.default_rng(2).normal(0.0, 0.3, model.xyz.shape)
    from varref.refinement import objective

    # split even this small model: kernels over atoms and planes, data beside restraints
    monkeypatch.setattr(parallel, "MIN_ATOMS_PER_THREAD", 20)
    monkeypatch.setattr(objective, "MIN_ATOMS_CONCURRENT", 10)
    results = {}
    for count in (1, 2):
        parallel.set_threads(count)
        results[count] = refine(model, density, 3.0, xyz=start, macro_cycles=1, iterations=20,
                                fsc=True, validation=True)
    np.testing.assert_array_equal(results[2].xyz, results[1].xyz)
    # the start's reports, computed beside the refinement on two threads, are those of one
    assert results[2].fsc == results[1].fsc
    for when in ("before", "after"):
        assert results[2].validation[when] == results[1].validation[when]
    np.testing.assert_array_equal(results[2].model.b_iso, results[1].model.b_iso)
    assert results[2].weight == results[1].weight


def test_an_error_in_a_worker_part_is_raised_after_every_part_ends():
    finished = []

    def work(lo, hi, j):
        if j == 1:
            raise RuntimeError("part 1 failed")
        finished.append(j)

    with pytest.raises(RuntimeError, match="part 1 failed"):
        parallel.run_parts(work, [(0, 1), (1, 2), (2, 3)])
    assert sorted(finished) == [0, 2]


def test_thread_setting_and_its_errors(monkeypatch, restore_threads, capsys, tmp_path):
    parallel.set_threads(3)
    assert parallel.threads() == 3 and parallel.configured_threads() == 3
    with pytest.raises(ValueError, match="threads must be a positive integer, got 0"):
        parallel.set_threads(0)
    monkeypatch.setenv("VARREF_THREADS", "2")
    parallel.set_threads(None)
    assert parallel.threads() == 2 and parallel.configured_threads() is None
    monkeypatch.setenv("VARREF_THREADS", "many")
    parallel.set_threads(None)
    with pytest.raises(ValueError, match="VARREF_THREADS must be a positive integer"):
        parallel.threads()
    # the command line: one line naming the variable, exit 2; --threads wins over it
    model = tmp_path / "helix.pdb"
    write_model(example_helix(3), model)
    assert main(["info", str(model)]) == 2
    assert capsys.readouterr().err.strip() == (
        "varref: error: VARREF_THREADS: must be a positive integer, got 'many'")
    assert main(["info", str(model), "--threads", "0"]) == 2
    assert "--threads" in capsys.readouterr().err
    monkeypatch.setenv("VARREF_THREADS", "1")
    parallel.set_threads(None)
    assert main(["info", str(model), "--threads", "2"]) == 0
    assert parallel.configured_threads() is None  # restored after the command


def test_sections_nested_in_varref_threads_run_serially(restore_threads):
    parallel.set_threads(2)
    seen = parallel.map_threads(lambda item: (item, parallel.available()), [1, 2, 3])
    assert seen == [(1, 1), (2, 1), (3, 1)]  # results in order, one thread inside
    inner = parallel.concurrently(lambda: parallel.available(), lambda: parallel.available())
    assert inner == [2, 1]  # the caller's thread may split again, a pool thread may not


@pytest.mark.parametrize("count", [1, 2])
def test_work_beside_this_thread_runs_serially_and_hands_back_its_errors(restore_threads, count):
    """beside(): on two threads the work runs in a varref worker thread (its own sections
    serial), on one thread at once in this thread; a result or an error comes back through
    its future, and leaving the block waits for the work."""
    import threading
    import time

    parallel.set_threads(count)
    here = threading.get_ident()
    done = []

    def slow():
        time.sleep(0.05)
        done.append(threading.get_ident())
        return parallel.available()

    def failing():
        raise ValueError("beside failed")

    with parallel.beside() as side:
        result, error = side.submit(slow), side.submit(failing)
    assert len(done) == 1 and (done[0] == here) == (count == 1)
    assert result.result() == 1
    with pytest.raises(ValueError, match="beside failed"):
        error.result()


def test_a_failed_refinement_waits_for_its_start_reports_and_raises_its_own_error(monkeypatch,
                                                                                  restore_threads):
    """refine(): when the refinement fails, the reports running beside it finish first (no
    thread is left working) and the refinement's error is the one raised."""
    import threading

    from varref.api import refine
    from varref.refinement import pipeline
    from varref.simulate import simulate_map

    parallel.set_threads(2)
    model = example_helix(6)
    density = simulate_map(model, 3.0)

    def failing(*args, **kwargs):
        raise RuntimeError("refinement failed")

    monkeypatch.setattr(pipeline, "refine_coordinates", failing)
    with pytest.raises(RuntimeError, match="refinement failed"):
        refine(model, density, 3.0, fsc=True, validation=True)
    assert not [t for t in threading.enumerate() if t.name.startswith("varref-beside")]
