"""Series inputs as users have them (varref.ensemble.series_inputs): 3DVA, cryoDRGN, RELION,
list files, globs; components in the map-series and results stores; chained walks per
component; the voxel-size override and warning."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from varref.cli import main
from varref.ensemble.mapseries import open_map_series
from varref.ensemble.results import ResultStore
from varref.ensemble.series_inputs import (
    chained_walk,
    check_voxel_size,
    collect_series_inputs,
    frame_in_component,
    open_series,
)
from varref.errors import InputError
from varref.maps import Map, write_map

SHAPE = (8, 9, 10)  # (nz, ny, nx)


def tiny_map(value: float, shape=SHAPE, voxel=1.0, origin=(0.0, 0.0, 0.0)) -> Map:
    data = np.full(shape, value, np.float32)
    data[0, 0, 0] += 1.0  # not constant
    return Map(data, origin, (voxel,) * 3, (90.0, 90.0, 90.0))


def write(path, value: float, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_map(tiny_map(value, **kwargs), path)
    return path


def value_of(density: Map) -> float:
    return float(density.data[1, 1, 1])


def test_3dva_frames_ordered_numerically_per_component(tmp_path):
    paths = [write(tmp_path / f"J42_component_{c:03d}_frame_{f:d}.mrc", 100 * c + f)
             for c in (1, 0) for f in range(12)]
    shuffled = [paths[i] for i in np.random.default_rng(0).permutation(len(paths))]
    inputs = collect_series_inputs(shuffled)
    assert inputs.components == ["component_000"] * 12 + ["component_001"] * 12
    assert inputs.labels[:3] == ["J42_component_000_frame_0.mrc", "J42_component_000_frame_1.mrc",
                                 "J42_component_000_frame_2.mrc"]
    assert inputs.labels[11] == "J42_component_000_frame_11.mrc"  # frame_11 after frame_9
    series = inputs.open()
    assert [value_of(series.frame(k)) for k in (0, 11, 12, 23)] == [0, 11, 100, 111]
    assert frame_in_component(series.components, len(series)).tolist() == [*range(12), *range(12)]
    # keep_order: as given
    assert collect_series_inputs(shuffled, keep_order=True).paths == [str(p) for p in shuffled]


def test_cryodrgn_analyze_directory_components_and_voxel_override(tmp_path):
    analyze = tmp_path / "analyze.10"
    for directory, n in (("pc2", 3), ("pc1", 11), ("kmeans3", 3)):
        for k in reversed(range(n)):
            write(analyze / directory / f"vol_{k:03d}.mrc", k, origin=(-4.0, 0.0, 2.0))
    (analyze / "umap.png").write_bytes(b"not a map")
    inputs = collect_series_inputs([analyze], voxel_size=1.3)
    assert inputs.components == ["kmeans3"] * 3 + ["pc1"] * 11 + ["pc2"] * 3
    assert inputs.labels[3:6] == ["pc1/vol_000.mrc", "pc1/vol_001.mrc", "pc1/vol_002.mrc"]
    assert inputs.labels[13] == "pc1/vol_010.mrc"
    series = inputs.open()
    np.testing.assert_allclose(series.voxel_size, 1.3)
    density = series.frame(13)
    np.testing.assert_allclose(density.voxel_size, 1.3)
    np.testing.assert_allclose(density.origin, [-5.2, 0.0, 2.6], atol=1e-4)  # origin kept in voxels
    assert value_of(density) == 10.0
    # the same through a glob, as an unexpanded shell pattern
    globbed = collect_series_inputs([str(analyze / "pc*" / "vol_*.mrc")])
    assert globbed.components == ["pc1"] * 11 + ["pc2"] * 3


def test_relion_classes_ordered_by_class_number(tmp_path):
    paths = [write(tmp_path / f"run_it025_class{k:03d}.mrc", k) for k in (3, 10, 1, 2)]
    inputs = collect_series_inputs(paths)
    assert inputs.labels == ["run_it025_class001.mrc", "run_it025_class002.mrc",
                             "run_it025_class003.mrc", "run_it025_class010.mrc"]
    assert inputs.components is None


def test_list_file_with_comments_relative_paths_and_globs(tmp_path):
    maps = tmp_path / "maps"
    for k in range(4):
        write(maps / f"state_{k}.mrc", k)
    listing = tmp_path / "series.txt"
    listing.write_text("# my states\nmaps/state_2.mrc\n\n  maps/state_0.mrc  # the first\n"
                       "maps/state_[13].mrc\n")
    inputs = collect_series_inputs([listing], keep_order=True)
    assert inputs.labels == ["state_2.mrc", "state_0.mrc", "state_1.mrc", "state_3.mrc"]
    assert collect_series_inputs([listing]).labels == [f"state_{k}.mrc" for k in range(4)]


@pytest.mark.parametrize("case, message", [
    ("missing", "no such file or directory"),
    ("empty_glob", "no file matches this pattern"),
    ("empty_list", "list of maps is empty"),
    ("twice", "given twice"),
    ("empty_dir", "directory holds no map files"),
])
def test_bad_inputs_are_one_line_errors(tmp_path, case, message):
    good = write(tmp_path / "a.mrc", 1.0)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty.txt").write_text("# nothing\n")
    inputs = {"missing": [tmp_path / "nope.mrc"], "empty_glob": [str(tmp_path / "zz*.mrc")],
              "empty_list": [tmp_path / "empty.txt"], "twice": [good, good],
              "empty_dir": [tmp_path / "empty"]}[case]
    with pytest.raises(InputError, match=message) as error:
        collect_series_inputs(inputs)
    assert "\n" not in str(error.value)


def test_mixed_voxel_sizes_name_the_first_offending_file(tmp_path, capsys):
    paths = [write(tmp_path / f"frame_{k}.mrc", k) for k in range(4)]
    write(paths[2], 2.0, voxel=1.1)
    write(paths[3], 3.0, shape=(8, 8, 8))
    with pytest.raises(InputError, match="frame_2.mrc: does not match frame_0.mrc: voxel size"):
        open_series(paths)
    output = tmp_path / "out.zarr"
    assert main(["maps-to-zarr", str(tmp_path), "-o", str(output)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "frame_2.mrc: does not match" in err[0] and not output.exists()


def test_maps_to_zarr_keeps_components_labels_and_voxel_override(tmp_path, capsys):
    for c in range(2):
        for f in range(3):
            write(tmp_path / "in" / f"P1_J9_component_{c:03d}_frame_{f:03d}.mrc", 10 * c + f)
    output = tmp_path / "va.zarr"
    assert main(["maps-to-zarr", str(tmp_path / "in"), "-o", str(output),
                 "--voxel-size", "1.25"]) == 0
    assert "components: 2 (component_000, component_001)" in capsys.readouterr().out
    series = open_map_series(output)
    assert series.components == ["component_000"] * 3 + ["component_001"] * 3
    np.testing.assert_allclose(series.voxel_size, 1.25)
    assert value_of(series.frame(4)) == 11.0
    reopened = open_series([output])
    assert reopened.components == series.components
    with pytest.raises(InputError, match="--voxel-size"):
        open_series([output], voxel_size=1.3)


def test_chained_walk_chains_within_each_component():
    assert chained_walk(None, 5, 2) == [(2, None), (3, 2), (1, 2), (4, 3), (0, 1)]
    walk = chained_walk(["a"] * 5 + ["b"] * 4, 9, 1)
    assert walk[0] == (1, None) and (7, None) in walk  # b starts at its middle frame (index 2)
    starts = {frame for frame, previous in walk if previous is None}
    assert starts == {1, 7}
    assert sorted(frame for frame, _ in walk) == list(range(9))
    for frame, previous in walk:
        if previous is not None:  # never across components, always a neighbour
            assert abs(frame - previous) == 1 and (frame < 5) == (previous < 5)


def test_results_store_carries_component_coordinates():
    from varref.example_data import example_helix

    components = ["pc1", "pc1", "pc1", "pc2", "pc2"]
    store = ResultStore.create(None, example_helix(3), 5, 1, [f"f{k}" for k in range(5)],
                               {"kind": "series", "components": components})
    dataset = store.dataset()
    assert dataset["component"].values.tolist() == components
    assert dataset["frame_in_component"].values.tolist() == [0, 1, 2, 0, 1]
    assert dataset["component"].dims == ("frame",) and dataset["component"].attrs["units"] == "n/a"


def test_voxel_size_warning_points_to_pixel_scan(caplog):
    from varref.example_data import example_helix
    from varref.simulate import simulate_map

    model = example_helix(20)
    density = simulate_map(model, 3.0, voxel_size=1.0)
    with caplog.at_level(logging.WARNING, logger="varref.ensemble.series_inputs"):
        assert check_voxel_size(model.xyz, density, "right.mrc") is None
        assert not caplog.records
        centre = density.origin + 0.5 * (np.array(density.data.shape[::-1]) - 1)
        shrunk = Map(density.data, centre - 0.5 * (np.array(density.data.shape[::-1]) - 1) * 0.9,
                     (0.9,) * 3, density.cell_angles)  # header 10 % too small
        assert check_voxel_size(model.xyz, shrunk, "wrong.mrc") > 1.0
        assert "wrong.mrc" in caplog.text and "varref pixel-scan" in caplog.text
        caplog.clear()
        tiny = Map(density.data[:10, :10, :10], density.origin, (1.0,) * 3, density.cell_angles)
        check_voxel_size(model.xyz, tiny, "cryodrgn.mrc")  # box smaller than the model
        assert "larger than the map box" in caplog.text and "--voxel-size" in caplog.text


def test_chained_series_restarts_from_the_input_model_in_every_component():
    from varref.api import refine_series
    from varref.ensemble.cluster import dask_client
    from varref.ensemble.memory_series import MemoryMapSeries
    from varref.errors import InputError
    from varref.example_data import example_helix
    from varref.simulate import simulate_map

    model = example_helix(10)
    moving = model.residue_index >= 5
    maps = []
    for shift in (-0.2, 0.0, 0.2, -0.2, 0.0, 0.2):
        xyz = model.xyz.copy()
        xyz[moving, 0] += shift
        maps.append(simulate_map(model, 3.0, xyz=xyz, grid=simulate_map(model, 3.0, margin=8.0)))
    series = MemoryMapSeries(maps, components=["pc1"] * 3 + ["pc2"] * 3)
    with dask_client(workers=1, quiet=True) as client:
        dataset = refine_series(model, series, 3.0, client=client, weight=20.0, macro_cycles=1,
                                iterations=20)
        # one trajectory prior cannot span two components: joint mode refuses before any work
        with pytest.raises(InputError, match="components"):
            refine_series(model, series, 3.0, client=client, mode="joint", weight=20.0,
                          final_cc=False, adp=False, rotamer_fit=False)
    assert dataset["component"].values.tolist() == ["pc1"] * 3 + ["pc2"] * 3
    assert dataset["frame_in_component"].values.tolist() == [0, 1, 2, 0, 1, 2]
    start = dataset["start_xyz"].isel(member=0).values
    refined = dataset["xyz"].isel(member=0).values
    # pc1 starts at its middle frame, pc2 at the reference frame (default 6 // 2 = 3)
    for frame in (1, 3):
        np.testing.assert_allclose(start[frame], model.xyz, atol=1e-5)
    for frame, previous in ((0, 1), (2, 1), (4, 3), (5, 4)):  # neighbours within the component
        np.testing.assert_allclose(start[frame], refined[previous], atol=1e-5)


def test_cli_series_takes_a_3dva_directory_and_keeps_components(tmp_path, capsys):
    from dataclasses import replace

    from varref.example_data import example_helix
    from varref.model import write_model
    from varref.simulate import grid_around, model_density

    model = example_helix(10)
    write_model(model, tmp_path / "model.pdb")
    grid = grid_around(model.xyz, 1.0, 8.0)
    moving = model.residue_index >= 5
    folder = tmp_path / "J3"
    folder.mkdir()
    for c in range(2):
        for f in range(3):
            xyz = model.xyz.copy()
            xyz[moving, c] += 0.15 * (f - 1)
            write_map(replace(grid, data=model_density(model, xyz, grid, 3.0)),
                      folder / f"J3_component_{c:03d}_frame_{f:03d}.mrc")
    output = tmp_path / "series.zarr"
    status = main(["series", str(tmp_path / "model.pdb"), str(folder), "-o", str(output),
                   "--resolution", "3", "--weight", "20", "--macro-cycles", "1",
                   "--iterations", "20", "--workers", "1"])
    out = capsys.readouterr().out
    assert status == 0
    assert "frame   3  component_001  J3_component_001_frame_000.mrc" in out
    dataset = ResultStore.open(output).dataset()
    assert dataset["component"].values.tolist() == ["component_000"] * 3 + ["component_001"] * 3
    assert dataset["frame_in_component"].values.tolist() == [0, 1, 2, 0, 1, 2]
    assert bool(dataset["finished"].all())


def test_voxel_size_check_of_a_store_reads_a_box_and_agrees(tmp_path, monkeypatch, caplog):
    """On a chunked store the check reads the chunks around the (scaled) model only and
    finds what the check of the whole frame finds."""
    from tests.ensemble.store_reads import record_store_reads
    from varref.ensemble.mapseries import write_series_frames
    from varref.ensemble.series_inputs import check_series_voxel_size
    from varref.example_data import example_helix
    from varref.simulate import grid_around, model_density

    model = example_helix(20)
    small = grid_around(model.xyz, 1.0, 6.0)
    nz, ny, nx = small.data.shape
    edge = 96
    frames = {}
    for name, voxel in (("right", 1.0), ("wrong", 0.9)):  # header 10 % too small
        data = np.zeros((edge,) * 3, np.float32)
        data[:nz, :ny, :nx] = model_density(model, model.xyz, small, 3.0)
        centre = small.origin + 0.5 * (edge - 1) * 1.0  # the box centre, as pixel-scan scales
        origin = centre - 0.5 * (edge - 1) * voxel
        frames[name] = Map(data, origin, (voxel,) * 3, (90.0,) * 3)
    record = record_store_reads(monkeypatch)
    for name, density in frames.items():
        store = tmp_path / f"{name}.zarr"
        write_series_frames([density], store, sources=[f"{name}.mrc"], chunk=16)
        series = open_map_series(store)
        record.clear()
        with caplog.at_level(logging.WARNING, logger="varref.ensemble.series_inputs"):
            caplog.clear()
            found = check_series_voxel_size(model.xyz, series)
            box_reads = set(record.chunk_keys())
            whole = check_voxel_size(model.xyz, series.frame(0), f"{name}.mrc")
        assert found == whole
        assert (found is None) == (name == "right") and (name == "right" or found > 1.0)
        assert (f"{name}.mrc: the model fits the map better" in caplog.text) == (name == "wrong")
        assert 0 < len(box_reads) < len(series.chunk_keys(0)) / 2  # a corner of 216 chunks
