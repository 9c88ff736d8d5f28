"""Spatially chunked map series (format 2): reading a box reads only its chunks, and gives
exactly what reading the whole frame and boxing it gives."""

from __future__ import annotations

import numpy as np
import pytest

from tests.ensemble.store_reads import record_store_reads
from varref.cli import main
from varref.ensemble.mapseries import (
    FORMAT_VERSION,
    chunk_shape,
    open_map_series,
    write_map_series,
    write_series_frames,
)
from varref.errors import InputError
from varref.maps import Map, box_bounds, write_map

SHAPE = (30, 26, 22)  # (nz, ny, nx): not multiples of the chunk edge
VOXEL = (0.9, 0.9, 0.9)
ORIGIN = (-5.4, 2.7, 9.0)


def noisy_frame(k: int) -> Map:
    """Smooth density plus noise (no two voxels alike, so a misplaced box is caught)."""
    rng = np.random.default_rng(k)
    z, y, x = np.indices(SHAPE, dtype=np.float64)
    blob = np.exp(-((z - 15) ** 2 + (y - 13) ** 2 + (x - 6 - k) ** 2) / 18.0)
    data = blob + 0.1 * rng.standard_normal(SHAPE)
    return Map(data.astype(np.float32), ORIGIN, VOXEL, (90.0, 90.0, 90.0), source=f"f{k}.mrc")


@pytest.fixture(scope="module")
def frames():
    return [noisy_frame(k) for k in range(3)]


@pytest.fixture(scope="module")
def chunked(tmp_path_factory, frames):
    output = tmp_path_factory.mktemp("chunked") / "maps.zarr"
    write_series_frames(frames, output, sources=[f.source for f in frames], chunk=8)
    return output


def random_points(rng, n=12):
    """Points around and beyond the grid (boxes clipped at every face)."""
    low = np.array(ORIGIN) - 4.0
    high = np.array(ORIGIN) + np.array(SHAPE[::-1]) * np.array(VOXEL) + 4.0
    centre = rng.uniform(low, high)
    return centre + rng.normal(scale=rng.uniform(0.5, 6.0), size=(n, 3))


def test_chunk_layout_and_format(chunked):
    series = open_map_series(chunked)
    assert series.chunks == (1, 8, 8, 8) and series.format_version == FORMAT_VERSION == 2
    assert chunk_shape((64, 64, 64)) == (1, 64, 64, 64)         # small: one chunk per frame
    assert chunk_shape((129, 128, 128)) == (1, 64, 64, 64)      # above 128³: 64³ chunks
    assert chunk_shape((300, 300, 300), "frame") == (1, 300, 300, 300)
    with pytest.raises(InputError, match="--chunk"):
        chunk_shape((10, 10, 10), 0)


def test_box_is_bit_identical_to_boxing_the_whole_frame(chunked, frames):
    series = open_map_series(chunked)
    rng = np.random.default_rng(3)
    tried = 0
    for trial in range(40):
        xyz = random_points(rng)
        k = trial % len(frames)
        whole = series.frame(k)
        np.testing.assert_array_equal(whole.data, frames[k].data)
        margin = float(rng.uniform(0.0, 9.0))
        try:
            expected = whole.box_around(xyz, margin)
        except InputError as error:  # every point outside: the box read fails the same way
            with pytest.raises(InputError) as box_error:
                series.frame_box(k, xyz, margin)
            assert str(box_error.value) == str(error)
            continue
        tried += 1
        boxed = series.frame_box(k, xyz, margin)
        np.testing.assert_array_equal(boxed.data, expected.data)
        np.testing.assert_array_equal(boxed.origin, expected.origin)
        np.testing.assert_array_equal(boxed.voxel_size, expected.voxel_size)
        assert boxed.source == expected.source
        for b in (None, 30.0, -20.0):
            prepared = series.frame_prepared(k, xyz, margin, b)
            reference = whole.prepared(xyz, margin, b)
            np.testing.assert_array_equal(prepared.data, reference.data)
            np.testing.assert_array_equal(prepared.origin, reference.origin)
    assert tried >= 20  # most trials had a box


def test_box_reads_only_the_chunks_it_touches(chunked, monkeypatch):
    series = open_map_series(chunked)
    record = record_store_reads(monkeypatch)
    xyz = np.array([[0.0, 10.0, 20.0], [3.0, 12.0, 22.0]])
    margin = 2.0
    lower, upper = box_bounds(series.origin, series.voxel_size, series.shape[:0:-1], xyz, margin)
    series.frame_box(1, xyz, margin)
    expected = set(series.chunk_keys(1, lower, upper))
    assert set(record.chunk_keys()) == expected and len(record.chunk_keys()) == len(expected)
    assert 0 < len(expected) < len(series.chunk_keys(1)) / 4  # a few of the frame's 48 chunks
    record.clear()
    series.frame(2)
    assert set(record.chunk_keys()) == set(series.chunk_keys(2))


def test_lost_chunk_is_named_and_only_boxes_that_touch_it_fail(tmp_path, frames):
    output = tmp_path / "maps.zarr"
    write_series_frames(frames, output, sources=["a", "b", "c"], chunk=8)
    series = open_map_series(output)
    (output / "maps" / "c" / "1" / "0" / "0" / "0").unlink()  # the corner at the origin
    near = np.array([[ORIGIN[0] + 2.0, ORIGIN[1] + 2.0, ORIGIN[2] + 2.0]])
    far = np.array(ORIGIN) + (np.array(SHAPE[::-1]) - 3) * np.array(VOXEL)
    with pytest.raises(InputError, match=r"frame 1 \(b\) is missing .* chunk\(s\) maps/c/1/0/0/0 lost"):
        series.frame_box(1, near, 3.0)
    with pytest.raises(InputError, match="maps/c/1/0/0/0 lost"):
        series.frame(1)
    series.frame_box(1, far[np.newaxis], 3.0)   # away from the lost chunk: read
    series.frame_box(0, near, 3.0)              # another frame's chunk: there


def test_format_1_store_is_still_read(tmp_path, frames):
    """A store as varref wrote it before spatial chunks (marker 1, one chunk per frame)."""
    import zarr
    from zarr.codecs import ZstdCodec

    output = tmp_path / "old.zarr"
    group = zarr.open_group(str(output), mode="w", zarr_format=3, attributes={
        "varref_map_series": 1, "voxel_size": list(VOXEL), "origin": list(ORIGIN),
        "cell_angles": [90.0] * 3, "resolution": 3.0, "sources": ["a", "b", "c"],
        "varref_version": "0.1.0"})
    array = group.create_array("maps", shape=(3, *SHAPE), chunks=(1, *SHAPE), dtype="float32",
                               compressors=ZstdCodec(level=5, checksum=True), fill_value=np.nan,
                               dimension_names=("frame", "z", "y", "x"))
    for k, density in enumerate(frames):
        array[k] = density.data
    series = open_map_series(output)
    assert series.format_version == 1 and series.chunks == (1, *SHAPE)
    xyz = np.array([[0.0, 10.0, 20.0]])
    np.testing.assert_array_equal(series.frame_prepared(2, xyz, 4.0).data,
                                  frames[2].prepared(xyz, 4.0).data)


def test_newer_format_is_refused(tmp_path, frames):
    import zarr

    output = tmp_path / "new.zarr"
    write_series_frames(frames, output, sources=["a", "b", "c"])
    zarr.open_group(str(output), mode="r+").attrs["varref_map_series"] = FORMAT_VERSION + 1
    with pytest.raises(InputError, match="newer than this varref reads"):
        open_map_series(output)


def test_generated_frames_must_match_the_sources(tmp_path, frames):
    output = tmp_path / "gen.zarr"
    with pytest.raises(InputError, match="2 maps for the 3 sources"):
        write_series_frames(iter(frames[:2]), output, sources=["a", "b", "c"])
    odd = Map(frames[0].data[:, :, :-1], ORIGIN, VOXEL, (90.0,) * 3, source="odd.mrc")
    with pytest.raises(InputError, match="odd.mrc: does not match a: grid"):
        write_series_frames([frames[0], odd], output, sources=["a", "b"])
    assert not output.exists() and not list(tmp_path.glob(".gen.zarr*"))


def test_cli_chunk_option(tmp_path, frames, capsys):
    paths = []
    for k, density in enumerate(frames):
        paths.append(tmp_path / f"frame_{k}.mrc")
        write_map(density, paths[-1])
    output = tmp_path / "cli.zarr"
    assert main(["maps-to-zarr", *map(str, paths), "-o", str(output), "--chunk", "16"]) == 0
    assert "chunks 16x16x16" in capsys.readouterr().out
    series = open_map_series(output)
    assert series.chunks == (1, 16, 16, 16)
    for k, path in enumerate(paths):
        np.testing.assert_array_equal(series.frame(k).data, frames[k].data)
    assert main(["maps-to-zarr", *map(str, paths), "-o", str(tmp_path / "x.zarr"),
                 "--chunk", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--chunk" in err[0] and ">= 8" in err[0]
    assert not (tmp_path / "x.zarr").exists()
    write_map_series(paths, tmp_path / "auto.zarr", progress=False)  # small maps: one chunk
    assert open_map_series(tmp_path / "auto.zarr").chunks == (1, *SHAPE)
