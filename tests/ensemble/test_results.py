"""Result stores: one schema in memory and in zarr, residue identity, units, parameters, the
embedded model, reading only the chunks needed, and hydrogen/deuterium handling."""

from __future__ import annotations

import json
from pathlib import Path

import gemmi
import numpy as np
import pytest
import xarray as xr

from varref.ensemble.precision import precision, residue_of_atoms
from varref.ensemble.results import (
    ResultStore, decode_parameters, encode_parameters, model_from_results, open_results)
from varref.ensemble.series import frame_summary
from varref.errors import InputError
from varref.example_data import example_helix
from varref.model import Model, read_model, read_models, write_model

LABELS = ["A/10", "A/11", "A/52", "A/52A", "A/53", "A/54", "A1/1", "A1/2", "A1/3", "A1/4", "A1/5", "A1/6"]


def two_chain_model(deuterium: bool = False) -> Model:
    """12 helix residues as chain A (10, 11, 52, 52A, 53, 54) and chain A1 (1..6): the old
    f"{chain}{number}" labels merge A/11 with A1/1 and 52 with 52A. With ``deuterium``, one D
    atom 1 Å from each residue's N."""
    st = example_helix(12).structure.clone()
    chain_a = st[0][0]
    chain_a1 = gemmi.Chain("A1")
    for k in range(6, 12):
        chain_a1.add_residue(chain_a[k])
    for k in range(11, 5, -1):
        del chain_a[k]
    st[0].add_chain(chain_a1)
    numbers = [(10, " "), (11, " "), (52, " "), (52, "A"), (53, " "), (54, " "),
               (1, " "), (2, " "), (3, " "), (4, " "), (5, " "), (6, " ")]
    residues = [r for chain in st[0] for r in chain]
    for residue, (number, icode) in zip(residues, numbers):
        residue.seqid = gemmi.SeqId(number, icode)
        if deuterium:
            n = residue["N"][0]
            atom = gemmi.Atom()
            atom.name, atom.element = "D", gemmi.Element("D")
            atom.pos = gemmi.Position(n.pos.x + 1.0, n.pos.y, n.pos.z)
            atom.occ, atom.b_iso = 1.0, 20.0
            residue.add_atom(atom)
    st.setup_entities()
    return Model.from_structure(st, source="two_chains.pdb")


def fill(store: ResultStore, model: Model, seed: int = 0, skip=((0, 2),)) -> None:
    """Write every cell but ``skip``; member 1 has the highest CC_mask in each frame."""
    rng = np.random.default_rng(seed)
    for frame in range(store.n_frames):
        for member in range(store.n_members):
            if (frame, member) in skip:
                continue
            xyz = model.xyz + rng.normal(scale=0.3, size=model.xyz.shape)
            store.write_member(frame, member, xyz, model.xyz,
                               {"cc_mask": 0.8 + 0.05 * (member == 1) + 0.01 * frame,
                                "bond_rmsd": 0.01 * (member + 1), "runtime_s": 1.5})


PARAMETERS = {"kind": "series", "resolution": 3.0, "seed": np.int64(7), "resume": False,
              "weight": None, "sources": ("a.mrc", "b.mrc"), "mixed": [1, 2.5, "x", True],
              "options": {"macro_cycles": 3, "terms": ["map", "bonds"]}, "nested": [[1, 2], [3]]}
EXPECTED = {"kind": "series", "resolution": 3.0, "seed": 7, "resume": False, "weight": None,
            "sources": ["a.mrc", "b.mrc"], "mixed": [1, 2.5, "x", True],
            "options": {"macro_cycles": 3, "terms": ["map", "bonds"]}, "nested": [[1, 2], [3]]}


def assert_same_types(actual, expected):
    assert actual == expected
    for key, value in expected.items():
        assert type(actual[key]) is type(value), key
        if isinstance(value, list):
            assert [type(v) for v in actual[key]] == [type(v) for v in value], key


def test_memory_and_zarr_stores_hold_the_same_dataset(tmp_path):
    model = two_chain_model()
    memory = ResultStore.create(None, model, 2, 3, ["a.mrc", "b.mrc"], PARAMETERS)
    disk = ResultStore.create(tmp_path / "run.zarr", model, 2, 3, ["a.mrc", "b.mrc"], PARAMETERS)
    for store in (memory, disk):
        fill(store, model)
    xr.testing.assert_identical(memory.dataset(), disk.dataset())
    reopened = ResultStore.open(tmp_path / "run.zarr")
    xr.testing.assert_identical(memory.dataset(), reopened.dataset())
    expected_finished = np.ones((2, 3), bool)
    expected_finished[0, 2] = False
    for store in (memory, disk, reopened):
        np.testing.assert_array_equal(store.finished(), expected_finished)
        assert [store.best_member(f) for f in range(2)] == [1, 1]
        np.testing.assert_array_equal(store.member_xyz(1, 2), memory.member_xyz(1, 2))
        assert store.member_xyz(1, 2).dtype == np.float64 and store.member_xyz(1, 2).shape == (model.n_atoms, 3)
    # unfinished cells hold NaN, finished ones what was written (float32)
    dataset = disk.dataset()
    assert np.isnan(dataset["xyz"].values[0, 2]).all() and np.isnan(dataset["cc_mask"].values[0, 2])
    assert dataset["bond_rmsd"].values[1, 2] == pytest.approx(0.03)
    assert np.isnan(dataset["cc_box"].values[1, 2])  # not given: NaN
    assert dataset["xyz"].dtype == np.float32 and dataset["finished"].dtype == bool


def test_residues_are_identified_by_chain_number_and_insertion_code(tmp_path):
    model = two_chain_model()
    store = ResultStore.create(tmp_path / "run.zarr", model, 3, 2, ["a", "b", "c"], {"reference_frame": 1})
    # frame k: residue r moved by (k − 1)·0.1·(r + 1) Å along x; member 1 is the best
    shift = 0.1 * (model.residue_index + 1.0)
    for frame in range(3):
        for member in range(2):
            xyz = model.xyz.copy()
            xyz[:, 0] += (frame - 1) * shift
            if member == 0:  # the other member: residue A1/1 (index 6) off by 0.8 Å in y
                xyz[model.residue_index == 6, 1] += 0.8
            store.write_member(frame, member, xyz, model.xyz, {"cc_mask": 0.7 + 0.1 * member,
                                                                "bond_rmsd": 0.01, "angle_rmsd": 1.0})
    dataset = open_results(tmp_path / "run.zarr")
    for name in ("chain_id", "residue_number", "insertion_code", "residue_name", "atom_name",
                 "element", "residue_index"):
        assert dataset[name].dims == ("atom",)
    np.testing.assert_array_equal(dataset["residue_index"].values, model.residue_index)
    assert dataset["residue_index"].dtype.kind == "i"
    assert sorted(set(dataset["insertion_code"].values)) == ["", "A"]

    residue, first = residue_of_atoms(dataset["residue_index"].values)
    assert residue.max() + 1 == 12
    np.testing.assert_array_equal(residue, model.residue_index)

    summary = frame_summary(dataset, reference_frame=1)
    assert list(summary["residue_label"]) == LABELS
    assert list(summary["best_member"]) == [1, 1, 1]
    np.testing.assert_allclose(summary["residue_displacement"][0], 0.1 * np.arange(1, 13), atol=1e-4)
    np.testing.assert_allclose(summary["residue_displacement"][2], 0.1 * np.arange(1, 13), atol=1e-4)

    spread = precision(dataset, frame=0)
    assert list(spread["residue_label"].values) == LABELS
    assert list(spread["residue_insertion_code"].values[2:4]) == ["", "A"]
    rmsf = spread["residue_rmsf"].values
    assert int(np.argmax(rmsf)) == 6 and rmsf[6] > 0.3  # A1/1, not merged with A/11
    assert rmsf[1] < 0.1 * rmsf[6]


def test_every_variable_and_coordinate_has_units_and_description(tmp_path):
    model = two_chain_model()
    memory = ResultStore.create(None, model, 2, 2, ["a", "b"], {})
    disk = ResultStore.create(tmp_path / "run.zarr", model, 2, 2, ["a", "b"], {})
    for store in (memory, disk):
        fill(store, model, skip=())
    spread = precision(memory.dataset())
    for dataset in (memory.dataset(), disk.dataset(), ResultStore.open(disk.path).dataset(), spread):
        names = list(dataset.variables)
        assert len(names) == (9 if dataset is spread else 27)  # incl. b_iso
        for name in names:
            attrs = dataset[name].attrs
            assert isinstance(attrs.get("units"), str) and attrs["units"], name
            assert isinstance(attrs.get("description"), str) and len(attrs["description"]) > 5, name
    units = {name: disk.dataset()[name].attrs["units"] for name in ("xyz", "cc_mask", "angle_rmsd", "runtime_s")}
    assert units == {"xyz": "Å", "cc_mask": "1", "angle_rmsd": "degree", "runtime_s": "s"}


def test_parameters_are_readable_attributes_and_round_trip_with_types(tmp_path):
    model = example_helix(3)
    store = ResultStore.create(tmp_path / "run.zarr", model, 2, 1, ["a.mrc", "b.mrc"], PARAMETERS)
    dataset = open_results(tmp_path / "run.zarr")
    assert dataset.attrs["resolution"] == 3.0 and type(dataset.attrs["resolution"]) is float
    assert dataset.attrs["kind"] == "series"
    assert list(dataset.attrs["sources"]) == ["a.mrc", "b.mrc"]
    assert json.loads(dataset.attrs["options"]) == EXPECTED["options"]  # not a scalar or list: JSON
    assert "varref" not in dataset.attrs  # no single JSON blob any more
    for parameters in (store.parameters, ResultStore.open(tmp_path / "run.zarr").parameters,
                       decode_parameters(dict(dataset.attrs)), decode_parameters(encode_parameters(PARAMETERS))):
        assert_same_types(parameters, EXPECTED)
    memory = ResultStore.create(None, model, 1, 1, ["m"], PARAMETERS)
    assert_same_types(memory.parameters, EXPECTED)
    with pytest.raises(ValueError, match="reserved"):
        ResultStore.create(None, model, 1, 1, ["m"], {"varref_results_format": 1})
    with pytest.raises(ValueError, match="JSON"):
        ResultStore.create(None, model, 1, 1, ["m"], {"callback": {"f": print}})


@pytest.mark.parametrize("name", ["1crn.pdb", "1d66.pdb", "5i55.cif", "6v5b_drna.pdb"])
def test_model_from_results_reproduces_a_shared_model(tmp_path, name):
    from tests.conftest import shared_file

    model = read_model(shared_file(f"models/{name}"))
    ResultStore.create(tmp_path / "run.zarr", model, 1, 1, ["m"], {"model": str(name)})
    rebuilt = model_from_results(open_results(tmp_path / "run.zarr"))
    assert_same_model(rebuilt, model)


def assert_same_model(rebuilt: Model, model: Model) -> None:
    assert rebuilt.n_atoms == model.n_atoms
    for name in ("atom_name", "residue_name", "chain_id", "residue_number", "element",
                 "residue_index", "is_hydrogen", "is_water", "atomic_number"):
        np.testing.assert_array_equal(getattr(rebuilt, name), getattr(model, name), err_msg=name)
    np.testing.assert_array_equal(np.char.strip(rebuilt.insertion_code.astype(str)),
                                  np.char.strip(model.insertion_code.astype(str)))
    np.testing.assert_allclose(rebuilt.xyz, model.xyz, atol=1e-3)
    np.testing.assert_allclose(rebuilt.b_iso, model.b_iso, atol=1e-2)
    np.testing.assert_allclose(rebuilt.occupancy, model.occupancy, atol=1e-2)


def test_model_and_export_work_from_another_directory_without_the_model_file(tmp_path, monkeypatch, capsys):
    from varref.cli import main

    model_file = tmp_path / "input" / "two_chains.pdb"
    model_file.parent.mkdir()
    write_model(two_chain_model(), model_file)
    model = read_model(model_file)
    monkeypatch.chdir(model_file.parent)
    store = ResultStore.create("run.zarr", model, 2, 3, ["a", "b"], {"model": "two_chains.pdb"})
    fill(store, model)
    model_file.unlink()  # the recorded path no longer resolves anywhere
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    stored = tmp_path / "input" / "run.zarr"
    assert_same_model(model_from_results(open_results(stored)), model)
    assert main(["export", str(stored), "-o", "best.cif"]) == 0
    exported = read_models("best.cif")
    reopened = ResultStore.open(stored)
    assert len(exported) == 2
    for frame, member in enumerate([1, 1]):
        assert_same_model(exported[frame].with_xyz(model.xyz), model)
        np.testing.assert_allclose(exported[frame].xyz, reopened.member_xyz(frame, member), atol=1e-3)
    assert main(["export", str(stored), "-o", "all.pdb", "--all-members"]) == 0
    assert len(read_models("all.pdb")) == 5
    # --model must have the store's atoms
    other = elsewhere / "helix.pdb"
    write_model(example_helix(12), other)
    assert main(["export", str(stored), "-o", "x.cif", "--model", str(other)]) == 2
    err = capsys.readouterr().err
    assert "differs from the results store" in err and len(err.strip().splitlines()) == 1


def corrupt_chunks(path: Path, variable: str, keep: set[tuple[int, int]]) -> int:
    """Overwrite every (frame, member) chunk of ``variable`` except ``keep`` with garbage."""
    count = 0
    for chunk in (path / variable).iterdir():
        if chunk.name.startswith("."):
            continue
        frame, member = (int(i) for i in chunk.name.split(".")[:2])
        if (frame, member) not in keep:
            chunk.write_bytes(b"not a chunk" * 7)
            count += 1
    return count


def test_readers_touch_only_the_chunks_they_need(tmp_path, monkeypatch):
    """Corrupt the xyz chunks a reader must not need; it still works (and reading them fails)."""
    from varref.cli import main

    model = example_helix(8)
    path = tmp_path / "run.zarr"
    store = ResultStore.create(path, model, 3, 3, ["a", "b", "c"], {})
    fill(store, model, skip=())
    expected = {cell: store.member_xyz(*cell) for cell in [(2, 0), (0, 1), (1, 1), (2, 1)]}

    # one member: only its chunk
    assert corrupt_chunks(path, "xyz", keep={(2, 0)}) == 8
    np.testing.assert_array_equal(ResultStore.open(path).member_xyz(2, 0), expected[(2, 0)])
    with pytest.raises(Exception):  # the corruption is real: another member cannot be read
        ResultStore.open(path).member_xyz(0, 0)
    with pytest.raises(Exception):
        open_results(path)["xyz"].values

    # export and frame_summary of the best members: one chunk per frame
    fill(store, model, skip=())
    corrupt_chunks(path, "xyz", keep={(0, 1), (1, 1), (2, 1)})
    monkeypatch.chdir(tmp_path)
    assert main(["export", str(path), "-o", "best.cif"]) == 0
    for frame, exported in enumerate(read_models("best.cif")):
        np.testing.assert_allclose(exported.xyz, expected[(frame, 1)], atol=1e-3)
    summary = frame_summary(open_results(path), reference_frame=1)
    assert np.isfinite(summary["residue_displacement"]).all()

    # precision of frame 2: only frame 2's members
    fill(store, model, skip=())
    corrupt_chunks(path, "xyz", keep={(2, 0), (2, 1), (2, 2)})
    spread = precision(open_results(path), frame=2)
    assert spread.attrs["n_members"] == 3 and np.isfinite(spread["rmsf"].values).all()


def test_deuterium_counts_as_hydrogen_in_precision_and_summaries():
    model = two_chain_model(deuterium=True)
    deuterium = model.element == "D"
    assert deuterium.sum() == 12 and model.is_hydrogen[deuterium].all()
    store = ResultStore.create(None, model, 2, 3, ["a", "b"], {})
    rng = np.random.default_rng(3)
    for frame in range(2):
        for member in range(3):
            xyz = model.xyz.copy()
            xyz[deuterium] += rng.normal(scale=2.0, size=(12, 3))  # only the D atoms move
            store.write_member(frame, member, xyz, model.xyz, {"cc_mask": 0.5 + 0.1 * member})
    dataset = store.dataset()
    spread = precision(dataset)
    assert spread.attrs["rmsf_max"] < 1e-4 and np.nanmax(spread["residue_rmsf"].values) < 1e-4
    assert spread["rmsf"].values[deuterium].min() > 0.5  # they did move
    summary = frame_summary(dataset, reference_frame=0)
    assert np.nanmax(summary["residue_displacement"]) < 1e-4


def test_best_member_considers_finished_members_only(tmp_path):
    import zarr

    model = example_helix(3)
    path = tmp_path / "run.zarr"
    store = ResultStore.create(path, model, 2, 3, ["a", "b"], {})
    store.write_member(0, 0, model.xyz, model.xyz, {"cc_mask": 0.6})
    store.write_member(0, 2, model.xyz, model.xyz, {"cc_mask": 0.7})
    # a member killed between its data and its flag: CC written, not finished
    zarr.open_group(str(path), mode="r+")["cc_mask"][0, 1] = 0.99
    assert store.best_member(0) == 2
    assert ResultStore.open(path).finished().tolist() == [[True, False, True], [False, False, False]]
    with pytest.raises(ValueError, match="no finished member"):
        store.best_member(1)
    with pytest.raises(ValueError, match="has not finished"):
        store.member_xyz(0, 1)
    with pytest.raises(ValueError, match="no finished member"):
        precision(store.dataset(), frame=1)
    summary = frame_summary(store.dataset(), reference_frame=0)
    assert summary["best_member"].tolist() == [2, -1]
    assert np.isnan(summary["residue_displacement"][1]).all() and np.isnan(summary["cc_best"][1])


def test_write_member_rejects_what_it_cannot_store():
    model = example_helix(3)
    store = ResultStore.create(None, model, 1, 2, ["m"], {})
    with pytest.raises(ValueError, match="shape"):
        store.write_member(0, 0, model.xyz[:-1], model.xyz, {})
    with pytest.raises(ValueError, match="unknown metric"):
        store.write_member(0, 0, model.xyz, model.xyz, {"cc_mask": 0.5, "clashscore": 3.0})
    bad = model.xyz.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        store.write_member(0, 0, bad, model.xyz, {})
    with pytest.raises(IndexError):
        store.write_member(0, 2, model.xyz, model.xyz, {})
    assert not store.finished().any()


@pytest.mark.parametrize("on_disk", [True, False])
def test_write_members_writes_a_batch_like_single_writes(tmp_path, on_disk):
    """A task's batch (members not necessarily consecutive) lands in the same cells, with the
    same values, as member-by-member writes; a batch with one bad member writes nothing."""
    model = example_helix(3)
    rng = np.random.default_rng(1)
    xyz = model.xyz + rng.normal(scale=0.2, size=(3, *model.xyz.shape))
    b_iso = rng.uniform(10, 50, size=(3, model.n_atoms))
    metrics = [{"cc_mask": 0.5 + 0.1 * k, "runtime_s": float(k)} for k in range(3)]
    members = [0, 2, 3]  # two runs: 0, and 2-3
    stores = [ResultStore.create(tmp_path / name if on_disk else None, model, 2, 5, ["a", "b"], {})
              for name in ("batch.zarr", "single.zarr")]
    stores[0].write_members(1, members, xyz, model.xyz[np.newaxis].repeat(3, 0), metrics, b_iso)
    for k, member in enumerate(members):
        stores[1].write_member(1, member, xyz[k], model.xyz, metrics[k], b_iso[k])
    batch, single = (s.dataset() for s in stores)
    assert batch["finished"].values.tolist() == [[False] * 5, [True, False, True, True, False]]
    for name in ("xyz", "start_xyz", "b_iso", "cc_mask", "runtime_s", "finished"):
        np.testing.assert_array_equal(batch[name].values, single[name].values)
    bad = xyz.copy()
    bad[1, 0, 0] = np.inf
    with pytest.raises(ValueError, match="member 1 of frame 0: non-finite"):
        stores[0].write_members(0, [0, 1, 4], bad, bad, metrics)
    with pytest.raises(ValueError, match="repeat"):
        stores[0].write_members(0, [0, 0, 4], xyz, xyz, metrics)
    with pytest.raises(ValueError, match="for 3 member"):  # 3 coordinate sets for 2 members
        stores[0].write_members(0, [0, 4], xyz, xyz, metrics[:2])
    assert not stores[0].finished()[0].any()


def test_open_rejects_anything_that_is_not_a_results_store(tmp_path):
    import zarr

    (tmp_path / "file.zarr").write_text("hello")
    (tmp_path / "empty").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("mine")
    zarr.open_group(str(tmp_path / "maps.zarr"), mode="w", zarr_format=3).attrs["varref_map_series"] = 1
    old = zarr.open_group(str(tmp_path / "old.zarr"), mode="w", zarr_format=2)
    old.attrs["varref"] = json.dumps({"kind": "ensemble"})
    zarr.consolidate_metadata(str(tmp_path / "old.zarr"))
    cases = {"missing.zarr": "not found", "file.zarr": "not a varref results store",
             "empty": "not a varref results store", "data": "not a varref results store",
             "maps.zarr": "map series", "old.zarr": "older varref"}
    for name, problem in cases.items():
        with pytest.raises(InputError) as caught:
            ResultStore.open(tmp_path / name)
        assert problem in caught.value.problem, name
        assert "\n" not in str(caught.value)
        with pytest.raises(InputError):
            open_results(tmp_path / name)


def test_create_replaces_a_store_but_never_other_data(tmp_path):
    model = example_helix(3)
    data = tmp_path / "data"
    data.mkdir()
    (data / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="refusing"):
        ResultStore.create(data, model, 1, 1, ["m"], {})
    assert (data / "notes.txt").read_text() == "mine"
    path = tmp_path / "run.zarr"
    first = ResultStore.create(path, model, 1, 2, ["m"], {"seed": 1})
    first.write_member(0, 0, model.xyz, model.xyz, {"cc_mask": 0.5})
    second = ResultStore.create(path, model, 1, 3, ["m"], {"seed": 2})
    assert second.finished().shape == (1, 3) and not second.finished().any()
    assert ResultStore.open(path).parameters == {"seed": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "run.zarr"]  # no leftovers


def test_member_b_factors_are_stored(tmp_path):
    """A member's refined B (option adp) is kept beside its coordinates; NaN until written."""
    model = two_chain_model()
    for path in (None, tmp_path / "b.zarr"):
        store = ResultStore.create(path, model, 1, 2, ["m"], {})
        b = np.linspace(10.0, 90.0, model.n_atoms)
        store.write_member(0, 1, model.xyz, model.xyz, {"cc_mask": 0.5}, b_iso=b)
        dataset = store.dataset()
        np.testing.assert_allclose(dataset["b_iso"].isel(frame=0, member=1).values, b, rtol=1e-6)
        assert np.isnan(dataset["b_iso"].isel(frame=0, member=0).values).all()
        assert dataset["b_iso"].attrs["units"] == "Å²"
        with pytest.raises(ValueError, match="b_iso"):
            store.write_member(0, 0, model.xyz, model.xyz, {}, b_iso=b[:-1])
