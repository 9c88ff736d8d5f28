"""A map series too large for any worker to hold: every task reads only the chunks of the box
around its model (recorded through the store), never a whole frame.

The frames are big grids (256³ here, 512³ in the slow variant) that are zero except for a
small region holding a model map, so the store compresses to almost nothing on disk while a
whole frame is 64 MiB (512 MiB) in memory.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.ensemble.store_reads import record_store_reads
from varref.ensemble.mapseries import open_map_series, write_series_frames
from varref.ensemble.series import run_series
from varref.example_data import example_helix
from varref.maps import Map, box_bounds
from varref.refinement.options import RefineOptions
from varref.restraints import build_restraints
from varref.simulate import grid_around, model_density

OPTIONS = dict(resolution=3.0, macro_cycles=1, weight=20.0, final_cc=False)


def embedded_frames(model, n_frames: int, edge: int, offset_xyz) -> tuple[np.ndarray, list]:
    """(origin, frame generator): ``edge``³ grids at 1 Å, zero but for the model's map (moved
    0.1 Å along x per frame) around voxel ``offset_xyz``; one frame in memory at a time."""
    small = grid_around(model.xyz, 1.0, 6.0)
    origin = small.origin - np.asarray(offset_xyz, dtype=float)
    nz, ny, nx = small.data.shape
    ox, oy, oz = offset_xyz

    def frames():
        for k in range(n_frames):
            data = np.zeros((edge,) * 3, np.float32)
            shifted = model.xyz + [0.1 * k, 0.0, 0.0]
            data[oz:oz + nz, oy:oy + ny, ox:ox + nx] = model_density(model, shifted, small, 3.0)
            yield Map(data, origin, (1.0,) * 3, (90.0,) * 3, source=f"frame_{k}")

    return origin, frames()


@pytest.fixture(scope="module")
def thread_client():
    """Workers as threads of this process, so the store's reads are recorded."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        yield client


@pytest.mark.parametrize("edge, n_frames", [
    (256, 4),
    pytest.param(512, 8, marks=pytest.mark.slow),  # 4 GiB of frames
])
def test_tasks_read_only_the_box_around_their_model(thread_client, tmp_path, monkeypatch,
                                                    edge, n_frames):
    model = example_helix(12)
    restraints = build_restraints(model)
    # a model region across chunk boundaries (64 | 50 + 20): up to 2 chunks along each axis
    origin, frames = embedded_frames(model, n_frames, edge, offset_xyz=(50, edge - 90, 100))
    store = tmp_path / "large.zarr"
    write_series_frames(frames, store, sources=[f"frame_{k}" for k in range(n_frames)])
    series = open_map_series(store)
    assert series.chunks == (1, 64, 64, 64)  # the automatic layout of a large frame
    frame_bytes = edge**3 * 4
    chunk_bytes = 64**3 * 4
    stored = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
    assert stored < frame_bytes / 20  # the series on disk is a small fraction of one frame

    record = record_store_reads(monkeypatch)
    options = RefineOptions(**OPTIONS)
    dataset = run_series(thread_client, model, restraints, series, tmp_path / "out.zarr",
                         options, mode="independent", models_per_map=1, perturb_rmsd=0.0,
                         progress=False)
    assert dataset["finished"].values.all()

    # what refine_frame boxes with: the refinement margin plus room for the perturbation
    margin = max(options.box_margin + 3.0 + 0.0, 5.0)
    lower, upper = box_bounds(series.origin, series.voxel_size, (edge,) * 3, model.xyz, margin)
    read = set(record.chunk_keys())
    for k in range(n_frames):
        expected = set(series.chunk_keys(k, lower, upper))
        assert record.frame_chunks(k) == expected, k
        decoded = len(expected) * chunk_bytes
        assert len(expected) <= 8 and decoded <= frame_bytes / 8, (k, len(expected))
        read -= expected
    assert not read, f"chunks read outside the tasks' boxes: {sorted(read)[:5]}"
    # each chunk once per task: the record shows no re-reads
    assert len(record.chunk_keys()) == len(set(record.chunk_keys()))
    # and the box read is the box refinement would have cut from the whole frame
    k = n_frames - 1
    whole = Map(np.asarray(series._array[k]), series.origin, series.voxel_size,
                series.cell_angles, source=series._source(k))
    np.testing.assert_array_equal(series.frame_prepared(k, model.xyz, margin).data,
                                  whole.prepared(model.xyz, margin).data)
