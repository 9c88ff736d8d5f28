"""Map-series store (varref.ensemble.mapseries) and ``varref maps-to-zarr``."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from varref.cli import main
from varref.ensemble.mapseries import (
    FileMapSeries,
    MapSeries,
    map_series_from_files,
    natural_sorted,
    open_map_series,
    open_maps,
    write_map_series,
)
from varref.errors import InputError
from varref.maps import Map, read_map, write_map

SHAPE = (20, 18, 16)  # (nz, ny, nx)
VOXEL = (1.05, 1.05, 1.05)
ORIGIN = (-8.4, 4.2, 10.5)  # whole voxels: written as NXSTART.., read back to ~1e-6 Å


def moving_gaussian(k: int, shape=SHAPE, voxel=VOXEL, origin=ORIGIN) -> Map:
    """A blob (sigma 2 voxels) whose centre moves one voxel along x per frame."""
    z, y, x = np.indices(shape, dtype=np.float64)
    centre = (shape[0] / 2, shape[1] / 2, 4.0 + k)
    data = np.exp(-((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) / 8.0)
    return Map(data.astype(np.float32), origin, voxel, (90.0, 90.0, 90.0))


def write_frames(directory, n=5, name="frame_{k}.mrc", **geometry):
    paths = []
    for k in range(n):
        path = directory / name.format(k=k)
        write_map(moving_gaussian(k, **geometry), path)
        paths.append(path)
    return paths


def leftovers(output):
    return list(output.parent.glob(f".{output.name}*"))


@pytest.fixture
def frames(tmp_path):
    return write_frames(tmp_path)


@pytest.fixture
def store(tmp_path, frames):
    output = tmp_path / "series.zarr"
    write_map_series(frames, output, resolution=3.2, progress=False)
    return output


def test_round_trip_is_exact(frames, store):
    series = open_map_series(store)
    assert isinstance(series, MapSeries)
    assert len(series) == 5 and series.shape == (5, *SHAPE)
    assert series.sources == [p.name for p in frames]
    assert series.resolution == 3.2
    first = read_map(frames[0])
    np.testing.assert_array_equal(series.voxel_size, first.voxel_size)
    np.testing.assert_array_equal(series.origin, first.origin)
    np.testing.assert_allclose(series.origin, ORIGIN, atol=1e-5)
    for k, path in enumerate(frames):
        density = series.frame(k)
        np.testing.assert_array_equal(density.data, read_map(path).data)
        assert density.data.dtype == np.float32 and density.data.flags.c_contiguous
        np.testing.assert_array_equal(density.origin, first.origin)
        assert frames[k].name in density.source
    with pytest.raises(IndexError):
        series.frame(5)
    assert not leftovers(store)


def test_frame_reads_only_its_own_chunk(store, monkeypatch):
    from zarr.storage import LocalStore

    keys = []
    original_get = LocalStore.get

    async def recording_get(self, key, *args, **kwargs):
        keys.append(key)
        return await original_get(self, key, *args, **kwargs)

    def no_partial_reads(*args, **kwargs):  # would read chunks behind our back
        raise AssertionError("unexpected partial read")

    monkeypatch.setattr(LocalStore, "get", recording_get)
    monkeypatch.setattr(LocalStore, "get_partial_values", no_partial_reads)
    series = open_map_series(store)
    assert "zarr.json" in keys, "the recording wrapper must see the store's reads"
    assert [key for key in keys if "/c/" in key] == [], "opening must read metadata only"
    keys.clear()
    series.frame(3)
    chunks = [key for key in keys if "/c/" in key]
    assert chunks == ["maps/c/3/0/0/0"]


def test_pickled_series_is_small_and_reads_frames(store):
    series = open_map_series(store)
    blob = pickle.dumps(series)
    assert len(blob) < 500 and b"float" not in blob  # the path, not data or zarr handles
    copy = pickle.loads(blob)
    np.testing.assert_array_equal(copy.frame(2).data, series.frame(2).data)
    assert copy.sources == series.sources


@pytest.mark.parametrize("change, problem", [
    ({"shape": (20, 18, 17)}, "grid 17x18x20 instead of 16x18x20"),
    ({"voxel": (1.06, 1.06, 1.06)}, "voxel size"),
    ({"origin": (-8.4, 4.2, 12.6)}, "origin"),
])
def test_mismatched_map_is_named_and_nothing_is_written(tmp_path, frames, change, problem):
    bad = tmp_path / "odd_one.mrc"
    write_map(moving_gaussian(9, **change), bad)
    output = tmp_path / "bad.zarr"
    with pytest.raises(InputError) as error:
        write_map_series([*frames[:3], bad, frames[3]], output, progress=False)
    assert error.value.source == str(bad)
    assert problem in error.value.problem and frames[0].name in error.value.problem
    assert not output.exists() and not leftovers(output)
    # the file-list series applies the same rules
    with pytest.raises(InputError) as error:
        map_series_from_files([*frames[:3], bad])
    assert error.value.source == str(bad) and problem in error.value.problem


def test_small_origin_and_voxel_differences_are_tolerated(tmp_path, frames):
    # 5e-4 Å off-grid origin (written to the ORIGIN field), 5e-5 relative voxel size
    close = tmp_path / "close.mrc"
    write_map(moving_gaussian(7, origin=(-8.4005, 4.2, 10.5), voxel=(1.05005,) * 3), close)
    output = tmp_path / "ok.zarr"
    write_map_series([*frames, close], output, progress=False)
    assert len(open_map_series(output)) == 6


def test_cli_sorts_naturally_and_reports(tmp_path, capsys):
    paths = write_frames(tmp_path, n=12, name="job_frame_{k}.mrc")
    shuffled = [paths[i] for i in np.random.default_rng(1).permutation(12)]
    output = tmp_path / "cli.zarr"
    status = main(["maps-to-zarr", *map(str, shuffled), "-o", str(output), "--resolution", "4"])
    out = capsys.readouterr().out
    assert status == 0
    series = open_map_series(output)
    assert series.sources == [f"job_frame_{k}.mrc" for k in range(12)]  # frame_10 after frame_9
    np.testing.assert_array_equal(series.frame(10).data, read_map(paths[10]).data)
    assert series.resolution == 4.0
    assert "wrote 12 maps of 16x18x20" in out and "size on disk" in out
    assert "job_frame_0.mrc ... job_frame_11.mrc" in out


def test_cli_refuses_inconsistent_maps_with_one_line(tmp_path, frames, capsys):
    bad = tmp_path / "frame_9.mrc"
    write_map(moving_gaussian(9, shape=(10, 10, 10)), bad)
    output = tmp_path / "cli.zarr"
    status = main(["maps-to-zarr", *map(str, frames), str(bad), "-o", str(output)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("varref")]
    assert status == 2 and len(err) == 1
    assert err[0].startswith(f"varref: error: {bad}: does not match frame_0.mrc: grid 10x10x10")
    assert not output.exists() and not leftovers(output)


def test_natural_sort():
    names = ["a/f_10.mrc", "a/f_9.mrc", "a/f_1.mrc", "a/f_100.mrc", "a/f_02.mrc", "a/f_2.mrc"]
    assert natural_sorted(names) == ["a/f_1.mrc", "a/f_02.mrc", "a/f_2.mrc", "a/f_9.mrc",
                                     "a/f_10.mrc", "a/f_100.mrc"]


def test_open_maps_on_files_behaves_like_the_store(frames, store):
    from_files = open_maps([str(p) for p in frames], resolution=3.2)
    from_store = open_maps([str(store)])
    assert isinstance(from_files, FileMapSeries) and isinstance(from_store, MapSeries)
    for attribute in ("shape", "sources", "resolution"):
        assert getattr(from_files, attribute) == getattr(from_store, attribute), attribute
    np.testing.assert_array_equal(from_files.voxel_size, from_store.voxel_size)
    np.testing.assert_array_equal(from_files.origin, from_store.origin)
    copy = pickle.loads(pickle.dumps(from_files))
    for k in range(len(from_store)):
        np.testing.assert_array_equal(copy.frame(k).data, from_store.frame(k).data)
        np.testing.assert_array_equal(copy.frame(k).origin, from_store.frame(k).origin)
    with pytest.raises(InputError, match="must be given alone"):
        open_maps([str(store), str(frames[0])])


def test_not_a_map_series(tmp_path, frames):
    import zarr

    plain = tmp_path / "plain.zarr"
    zarr.create_array(str(plain), shape=(2, 2), dtype="float32")
    group = tmp_path / "group.zarr"
    zarr.open_group(str(group), mode="w").create_array("maps", shape=(2, 2), dtype="float32")
    for store in (plain, group, tmp_path):
        with pytest.raises(InputError, match="not a varref map series"):
            open_maps([str(store)])
    with pytest.raises(InputError, match="not found"):
        open_map_series(tmp_path / "missing.zarr")
    with pytest.raises(InputError, match="is a file"):
        open_map_series(frames[0])
    # an existing directory that is not a series is never overwritten
    with pytest.raises(InputError, match="refusing to overwrite"):
        write_map_series(frames, plain, progress=False)
    assert (plain / "zarr.json").exists()


def test_existing_series_is_replaced(tmp_path, frames, store):
    write_map_series(frames[:2], store, progress=False)
    assert len(open_map_series(store)) == 2 and not leftovers(store)


def test_lost_chunk_is_an_error_not_zeros(store):
    chunk = store / "maps" / "c" / "2" / "0" / "0" / "0"
    chunk.unlink()
    series = open_map_series(store)
    series.frame(1)
    with pytest.raises(InputError, match="frame 2 .* missing"):
        series.frame(2)


def test_zstd_compresses_a_smooth_map(tmp_path):
    shape = (48, 48, 48)
    path = tmp_path / "smooth.mrc"
    write_map(moving_gaussian(20, shape=shape), path)
    output = tmp_path / "smooth.zarr"
    write_map_series([path], output, progress=False)
    metadata = (output / "maps" / "zarr.json").read_text()
    assert '"zstd"' in metadata
    stored = (output / "maps" / "c" / "0" / "0" / "0" / "0").stat().st_size
    raw = np.prod(shape) * 4
    assert stored < raw / 2, (stored, raw)
