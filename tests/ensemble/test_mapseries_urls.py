"""Map series at URLs (fsspec): written, read and refined from ``memory://`` and ``file://``
stores, with the same results as from a local directory; one-line errors otherwise."""

from __future__ import annotations

import importlib.util
import pickle
import uuid

import numpy as np
import pytest

from tests.ensemble.tiny import TINY_OPTIONS, assert_same_results, run_varref, series_args
from varref.cli import main
from varref.ensemble import urls
from varref.ensemble.fingerprint import series_sha256
from varref.ensemble.mapseries import (MapSeries, open_map_series, write_map_series,
                                       write_series_frames)
from varref.ensemble.memory_series import MemoryMapSeries
from varref.ensemble.series import run_series
from varref.errors import InputError
from varref.example_data import example_helix
from varref.maps import Map
from varref.refinement.options import RefineOptions
from varref.restraints import build_restraints
from varref.simulate import simulate_map

OPTIONS = dict(resolution=3.0, macro_cycles=2, weight=20.0, final_cc=False)


def memory_url(name: str = "maps.zarr") -> str:
    """A fresh location in this process's fsspec memory filesystem."""
    return f"memory://varref-test-{uuid.uuid4().hex[:8]}/{name}"


@pytest.fixture(scope="module")
def helix():
    model = example_helix(12)
    density = simulate_map(model, 3.0)
    frames = [simulate_map(model, 3.0, xyz=model.xyz + [0.1 * k, 0.05 * k, 0], grid=density)
              for k in range(3)]
    frames = [Map(f.data, f.origin, f.voxel_size, f.cell_angles, source=f"frame_{k}.mrc")
              for k, f in enumerate(frames)]
    return model, build_restraints(model), frames


@pytest.fixture(scope="module")
def thread_client():
    """A Dask cluster in this process: the memory filesystem is per process."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        yield client


def test_memory_url_round_trip(helix, tmp_path):
    _, _, frames = helix
    url = memory_url()
    write_series_frames(frames, url, sources=[f.source for f in frames], resolution=3.0, chunk=8)
    series = open_map_series(url)
    assert series.is_url and len(series) == 3 and series.chunks == (1, 8, 8, 8)
    local = tmp_path / "maps.zarr"
    write_series_frames(frames, local, sources=[f.source for f in frames], resolution=3.0, chunk=8)
    for k, density in enumerate(frames):
        np.testing.assert_array_equal(series.frame(k).data, density.data)
        np.testing.assert_array_equal(series.frame(k).origin, open_map_series(local).frame(k).origin)
    blob = pickle.dumps(series)
    assert len(blob) < 500 and url.encode() in blob
    np.testing.assert_array_equal(pickle.loads(blob).frame(2).data, frames[2].data)
    # the content hash reads the objects: stable, and it changes when a chunk does
    assert series_sha256(series) == series_sha256(open_map_series(url))
    other = memory_url()
    changed = [frames[0], frames[1], Map(frames[2].data * 1.01, frames[2].origin,
                                         frames[2].voxel_size, frames[2].cell_angles)]
    write_series_frames(changed, other, sources=[f.source for f in frames], resolution=3.0, chunk=8)
    assert series_sha256(open_map_series(other)) != series_sha256(series)


def test_url_output_is_replaced_or_refused_and_never_left_partial(helix):
    _, _, frames = helix
    sources = [f.source for f in frames]
    url = memory_url()
    write_series_frames(frames, url, sources=sources)
    write_series_frames(frames[:2], url, sources=sources[:2])  # an old series: replaced
    assert len(open_map_series(url)) == 2
    # a write that fails half-way removes what it wrote, old series included
    odd = Map(frames[0].data[:-1], frames[0].origin, frames[0].voxel_size, frames[0].cell_angles,
              source="odd.mrc")
    with pytest.raises(InputError, match="odd.mrc: does not match"):
        write_series_frames([frames[0], frames[1], odd], url, sources=sources)
    assert not urls.exists(url)
    with pytest.raises(InputError, match="not found"):
        open_map_series(url)
    # something that is not a series is never overwritten
    fs, path = urls.filesystem(url)
    fs.pipe(f"{path}/zarr.json", b'{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    with pytest.raises(InputError, match="refusing to overwrite"):
        write_series_frames(frames, url, sources=sources)
    assert fs.cat(f"{path}/zarr.json").startswith(b'{"zarr_format": 3')


def test_run_from_chunked_and_url_stores_equals_whole_frames(helix, thread_client, tmp_path):
    """The series tasks read boxes from the store; results are bit for bit those of whole
    frames held in memory."""
    model, restraints, frames = helix
    sources = [f.source for f in frames]
    local = tmp_path / "chunked.zarr"
    write_series_frames(frames, local, sources=sources, chunk=8)
    url = memory_url()
    write_series_frames(frames, url, sources=sources, chunk=8)
    datasets = {}
    for name, series in (("memory", MemoryMapSeries(frames, 3.0)),
                         ("chunked", open_map_series(local)), ("url", open_map_series(url))):
        datasets[name] = run_series(thread_client, model, restraints, series, None,
                                    RefineOptions(**OPTIONS), mode="chained", models_per_map=2,
                                    perturb_rmsd=0.3, progress=False)
    for name in ("chunked", "url"):
        for variable in ("xyz", "start_xyz", "cc_mask", "bond_rmsd"):
            np.testing.assert_array_equal(datasets[name][variable].values,
                                          datasets["memory"][variable].values,
                                          err_msg=f"{name}: {variable}")


def test_varref_series_reads_a_file_url_with_worker_processes(tiny_inputs, reference_runs,
                                                              tmp_path):
    """A real `varref series` run whose worker processes open the series from a URL
    (``file://`` goes through fsspec like ``s3://``): the reference run's results."""
    store = tmp_path / "maps.zarr"
    write_map_series(tiny_inputs.frames, store, progress=False, chunk=8)
    output = tmp_path / "series.zarr"
    args = series_args(tiny_inputs, output)
    first = args.index(tiny_inputs.frames[0])
    args[first:first + len(tiny_inputs.frames)] = [f"file://{store}"]
    result = run_varref(*args, "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert_same_results(output, reference_runs["series"])


@pytest.mark.parametrize("maps, output, expected", [
    ("s3://varref-no-bucket/maps.zarr", "out.zarr", "needs an fsspec backend that is not "
     "installed: Install s3fs"),
    ("ftp://127.0.0.1:9/maps.zarr", "out.zarr", "cannot reach the store: ConnectionRefusedError"),
    ("nosuchscheme://x/maps.zarr", "out.zarr", "unknown URL scheme nosuchscheme://"),
    ("memory://varref-nothing/maps.zarr", "out.zarr", "map series not found"),
    ("LOCAL", "memory://varref-out/series.zarr", "--output: memory://varref-out/series.zarr: a "
     "results store must be a local directory"),
])
def test_url_errors_are_one_line(tiny_inputs, tmp_path, capsys, maps, output, expected):
    if maps.startswith("s3://") and importlib.util.find_spec("s3fs") is not None:
        pytest.skip("s3fs is installed: the missing-backend error cannot happen")
    if maps == "LOCAL":
        maps = str(tiny_inputs.frames[0])
    if not urls.is_url(output):
        output = str(tmp_path / output)
    status = main(["series", str(tiny_inputs.model), maps, "-o", output, *TINY_OPTIONS])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert status == 2 and len(err) == 1, err
    assert err[0].startswith("varref: error: ") and expected in err[0], err[0]
    assert not list(tmp_path.iterdir())  # nothing written


def test_maps_to_zarr_writes_a_url(tiny_inputs, capsys):
    url = memory_url()
    status = main(["maps-to-zarr", *map(str, tiny_inputs.frames), "-o", url, "--chunk", "16"])
    assert status == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"to {url}" in out and "chunks 16x16x16" in out and "size on disk" in out
    series = MapSeries(url)
    assert len(series) == len(tiny_inputs.frames)
    assert main(["maps-to-zarr", *map(str, tiny_inputs.frames), "-o", url]) == 2
    assert "exists; use --overwrite" in capsys.readouterr().err
