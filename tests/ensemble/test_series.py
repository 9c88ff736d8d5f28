"""Variability (series) refinement on a synthetic hinge motion with known truth per frame."""

from __future__ import annotations

import numpy as np
import pytest

from varref.ensemble.cluster import dask_client
from varref.ensemble.mapseries import map_series_from_files
from varref.ensemble.series import frame_order, frame_summary, run_series
from varref.example_data import hinge_motion
from varref.maps import write_map
from varref.model import read_model
from varref.refinement.options import RefineOptions
from varref.restraints import build_restraints
from varref.simulate import grid_around, model_density


@pytest.fixture(scope="module")
def hinge_series(tmp_path_factory):
    """Crambin bending about residue 22 over 11 frames (ends 3.5 Å from the consensus), 3.5 Å maps
    with noise, all on one grid."""
    from tests.conftest import shared_file

    model = read_model(shared_file("models/1crn.pdb"))
    restraints = build_restraints(model)
    truths = hinge_motion(model, restraints, hinge_residue_index=21, n_frames=11, max_angle=20.0)
    grid = grid_around(truths.reshape(-1, 3), 1.0, 6.0)
    folder = tmp_path_factory.mktemp("series")
    rng = np.random.default_rng(5)
    paths = []
    for k, truth in enumerate(truths):
        data = model_density(model, truth, grid, 3.5)
        noise = rng.normal(scale=0.2 * data.std(), size=data.shape).astype(np.float32)
        from dataclasses import replace

        write_map(replace(grid, data=data + noise), folder / f"frame_{k:03d}.mrc")
        paths.append(folder / f"frame_{k:03d}.mrc")
    consensus = model.with_xyz(truths[len(truths) // 2])
    return consensus, restraints, truths, map_series_from_files(paths)


@pytest.fixture(scope="module")
def client():
    with dask_client(workers=2, quiet=True) as connected:
        yield connected


def per_frame_rmsd(dataset, truths):
    best = frame_summary(dataset, truths.shape[0] // 2)["best_member"]
    xyz = dataset["xyz"].values[np.arange(len(truths)), best].astype(np.float64)
    return np.sqrt(np.mean(np.sum((xyz - truths) ** 2, axis=-1), axis=-1))


def test_frame_order_walks_outward_from_the_reference():
    assert frame_order(5, 2) == [(2, None), (3, 2), (1, 2), (4, 3), (0, 1)]
    assert frame_order(3, 0) == [(0, None), (1, 0), (2, 1)]


def test_chained_recovers_every_frame_and_beats_independent_at_the_ends(client, hinge_series, tmp_path):
    model, restraints, truths, series = hinge_series
    motion = np.sqrt(np.mean(np.sum((truths - model.xyz) ** 2, axis=-1), axis=-1))
    assert motion[0] > 2.5 and motion[-1] > 2.5  # the ends are far from the consensus
    options = RefineOptions(resolution=3.5, macro_cycles=3, weight=20.0, final_cc=False)
    chained = run_series(client, model, restraints, series, tmp_path / "chained.zarr", options,
                         mode="chained", progress=False)
    independent = run_series(client, model, restraints, series, tmp_path / "independent.zarr",
                             options, mode="independent", progress=False)
    rmsd_chained = per_frame_rmsd(chained, truths)
    rmsd_independent = per_frame_rmsd(independent, truths)
    # every frame recovered to well below the motion's amplitude
    assert np.all(rmsd_chained < 0.35 * motion.max())
    ends = [0, len(truths) - 1]
    assert np.all(rmsd_chained[ends] < rmsd_independent[ends])
    assert chained["finished"].values.all()


def test_models_per_map_keeps_every_member_and_marks_the_best(client, hinge_series, tmp_path):
    model, restraints, truths, series = hinge_series
    options = RefineOptions(resolution=3.5, macro_cycles=2, weight=20.0, final_cc=False)
    dataset = run_series(client, model, restraints, series, tmp_path / "m2.zarr", options,
                         mode="independent", models_per_map=3, perturb_rmsd=0.5, progress=False)
    assert dataset["xyz"].shape[:2] == (len(truths), 3)
    assert dataset["finished"].values.all()
    summary = frame_summary(dataset, len(truths) // 2)
    cc = dataset["cc_mask"].values
    np.testing.assert_array_equal(summary["cc_best"], cc.max(axis=1))
    starts = dataset["start_xyz"].values[0].astype(np.float64)
    assert np.allclose(starts[0], model.xyz, atol=1e-3)  # member 0: the start itself
    assert not np.allclose(starts[1], starts[0], atol=0.1)  # others perturbed
