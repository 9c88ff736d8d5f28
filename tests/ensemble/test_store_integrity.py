"""Stores that cannot tear: data durable before the flag, damaged members found and re-run,
exports that refuse them, and resume only by the run that made the store."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from varref.ensemble import resume as resume_module
from varref.ensemble import results as results_module
from varref.ensemble.cluster import dask_client
from varref.ensemble.ensemble import run_ensemble
from varref.ensemble.memory_series import MemoryMapSeries
from varref.ensemble.results import ResultStore
from varref.ensemble.series import run_series
from varref.errors import InputError
from varref.example_data import example_helix
from varref.refinement.options import RefineOptions
from varref.restraints import build_restraints
from varref.simulate import simulate_map

OPTIONS = dict(resolution=3.0, macro_cycles=2, weight=20.0, final_cc=False)


@pytest.fixture(scope="module")
def helix():
    model = example_helix(12)
    return model, build_restraints(model), simulate_map(model, 3.0)


@pytest.fixture(scope="module")
def client():
    with dask_client(workers=1, quiet=True) as connected:
        yield connected


@pytest.fixture(scope="module")
def finished_run(client, helix, tmp_path_factory) -> Path:
    """A complete 4-member ensemble (read-only: tests copy it)."""
    model, restraints, density = helix
    path = tmp_path_factory.mktemp("run") / "ens.zarr"
    run_ensemble(client, model, restraints, density, path, 4, 0.5, RefineOptions(**OPTIONS),
                 batch_size=2, progress=False)
    return path


def copy_of(store: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / store.name
    shutil.copytree(store, target)
    return target


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def damage(store: Path) -> None:
    """Member 1: its xyz chunk file lost; member 2: NaN written over its coordinates."""
    import zarr

    (store / "xyz" / "0.1.0.0").unlink()
    group = zarr.open_group(str(store), mode="r+")
    xyz = group["xyz"][0, 2]
    xyz[5, 1] = np.nan
    group["xyz"][0, 2] = xyz


# ----------------------------------------------------------------------------- writing


def test_member_data_are_synced_to_disk_before_the_finished_flag(tmp_path, monkeypatch):
    model = example_helix(3)
    store = ResultStore.create(tmp_path / "s.zarr", model, 1, 2, ["m"], {})
    flag = tmp_path / "s.zarr" / "finished" / "0.1"
    synced = []

    def record(path):
        synced.append((Path(path), flag.exists()))

    monkeypatch.setattr(results_module, "_fsync", record)
    store.write_member(0, 1, model.xyz, model.xyz, {"cc_mask": 0.5}, b_iso=model.b_iso)
    files = {path.relative_to(tmp_path / "s.zarr").as_posix(): flag_there
             for path, flag_there in synced}
    for name in ("xyz/0.1.0.0", "start_xyz/0.1.0.0", "b_iso/0.1.0", "cc_mask/0.1", "xyz"):
        assert name in files, name
        assert files[name] is False, f"{name} synced after the flag was written"
    assert flag.exists()


def test_zarr_writes_chunk_files_whole_or_not_at_all(tmp_path, monkeypatch):
    """A chunk is written to a temporary file and renamed into place (zarr >= 3.1.3), so a
    kill mid-write leaves the old chunk or the new one, never half of one. If a zarr version
    changes how it writes, this fails and the guarantee must be re-established here."""
    model = example_helix(3)
    store = ResultStore.create(tmp_path / "s.zarr", model, 1, 1, ["m"], {})
    opened = []
    real_open = Path.open

    def spy(self, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and (tmp_path / "s.zarr") in self.parents:
            opened.append(self.name)
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", spy)
    store.write_member(0, 0, model.xyz, model.xyz, {"cc_mask": 0.5})
    chunk_names = {"0.0.0.0", "0.0.0", "0.0"}
    assert opened, "zarr no longer writes through Path.open: re-check its chunk writes"
    assert not chunk_names & set(opened), f"chunk files written in place: {opened}"
    assert all(name.endswith(".partial") for name in opened), opened
    assert not list((tmp_path / "s.zarr").rglob("*.partial"))


def test_new_store_is_synced_before_it_is_renamed_into_place(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(results_module, "_fsync", lambda path: synced.append(Path(path)))
    ResultStore.create(tmp_path / "s.zarr", example_helix(3), 1, 1, ["m"], {})
    assert any(p.name == ".zmetadata" for p in synced)
    assert tmp_path in synced  # the rename itself


# ----------------------------------------------------------------------------- damage


def test_flagged_members_with_missing_or_nan_coordinates_are_found(finished_run, tmp_path):
    store = copy_of(finished_run, tmp_path)
    assert ResultStore.open(store).incomplete_members() == []
    damage(store)
    opened = ResultStore.open(store)
    assert opened.incomplete_members() == [(0, 1), (0, 2)]
    for member in (1, 2):
        with pytest.raises(InputError, match=f"member {member} of frame 0 is flagged finished"):
            opened.member_xyz(0, member)
    opened.member_xyz(0, 3)  # the others still read


@pytest.mark.parametrize("all_members", [True, False])
def test_export_refuses_a_damaged_member_with_one_line_and_writes_nothing(
        finished_run, tmp_path, capsys, all_members):
    from varref.cli import main

    store = copy_of(finished_run, tmp_path)
    damage(store)
    import zarr

    # make a damaged member the best one, so the best-per-frame export reads it too
    zarr.open_group(str(store), mode="r+")["cc_mask"][0, 2] = 2.0
    output = tmp_path / "out.cif"
    status = main(["export", str(store), "-o", str(output)] + (["--all-members"] * all_members))
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert err.startswith(f"varref: error: {store}: member ") and "NaN" in err
    assert len(err.splitlines()) == 1
    assert not output.exists()


def test_resume_reruns_damaged_members_and_logs_them(client, helix, finished_run, tmp_path, caplog):
    model, restraints, density = helix
    store = copy_of(finished_run, tmp_path)
    damage(store)
    leftover = store / "xyz" / "0.3.0.deadbeef.partial"
    leftover.write_bytes(b"half a chunk")
    with caplog.at_level(logging.INFO, logger=resume_module.__name__):
        dataset = run_ensemble(client, model, restraints, density, store, 4, 0.5,
                               RefineOptions(**OPTIONS), batch_size=2, resume=True, progress=False)
    assert "2 member(s) flagged finished" in caplog.text
    assert "frame 0 member 1, frame 0 member 2" in caplog.text
    assert "removed 1 temporary chunk file" in caplog.text
    assert not leftover.exists()
    assert dataset["finished"].values.all()
    reference = ResultStore.open(finished_run).dataset()
    np.testing.assert_array_equal(dataset["xyz"].values, reference["xyz"].values)


# ----------------------------------------------------------------------------- resume checks


def _changed_map(density):
    data = density.data.copy()
    data[3, 4, 5] += 0.01
    return replace(density, data=data)


ENSEMBLE_CHANGES = {
    # name: (what the run changes, the item the error must name)
    "model": (lambda m, r, d, o, n, p: (m.with_xyz(m.xyz + np.eye(m.n_atoms, 3) * 0.01), r, d, o, n, p),
              "model content"),
    "map": (lambda m, r, d, o, n, p: (m, r, _changed_map(d), o, n, p), "map content"),
    "restraints": (lambda m, r, d, o, n, p: (m, build_restraints(m, united_atom_radii=True), d, o, n, p),
                   "restraints"),
    "macro_cycles": (lambda m, r, d, o, n, p: (m, r, d, replace(o, macro_cycles=3), n, p),
                     "--macro-cycles"),
    "seed": (lambda m, r, d, o, n, p: (m, r, d, replace(o, seed=1), n, p), "--seed"),
    "bond_target": (lambda m, r, d, o, n, p: (m, r, d, replace(o, bond_rmsd_target=0.02), n, p),
                    "--bond-rmsd-target"),
    "perturb_rmsd": (lambda m, r, d, o, n, p: (m, r, d, o, n, 0.6), "--perturb-rmsd"),
    "n_models": (lambda m, r, d, o, n, p: (m, r, d, o, 5, p), "--members"),
    "weight": (lambda m, r, d, o, n, p: (m, r, d, replace(o, weight=21.0), n, p), "--weight"),
    "reference_model": (lambda m, r, d, o, n, p: (m, r, d, replace(o, reference_model=m), n, p),
                        "--reference-model"),
}


@pytest.mark.parametrize("change", sorted(ENSEMBLE_CHANGES))
def test_resume_refuses_any_input_that_determines_results(helix, finished_run, change):
    model, restraints, density = helix
    before = tree(finished_run)
    alter, item = ENSEMBLE_CHANGES[change]
    m, r, d, o, n, p = alter(model, restraints, density, RefineOptions(**OPTIONS), 4, 0.5)
    with pytest.raises(InputError) as error:
        # no client: a refused resume must fail before any work is submitted
        run_ensemble(None, m, r, d, finished_run, n, p, o, batch_size=2, resume=True,
                     progress=False)
    message = str(error.value)
    assert message.startswith(f"{finished_run}: --resume: {item}"), message
    assert "\n" not in message
    assert tree(finished_run) == before


def test_resume_refuses_another_varref_version(helix, finished_run, monkeypatch):
    model, restraints, density = helix
    monkeypatch.setattr(resume_module, "__version__", "0.0.1-other")
    with pytest.raises(InputError, match="--resume: varref version differs"):
        run_ensemble(None, model, restraints, density, finished_run, 4, 0.5,
                     RefineOptions(**OPTIONS), resume=True, progress=False)


def test_resume_accepts_moved_inputs_with_the_same_content(helix, finished_run, tmp_path):
    """File names are recorded, not compared: the content hashes decide."""
    model, restraints, density = helix
    store = copy_of(finished_run, tmp_path)
    moved = replace(model, source="elsewhere/model.pdb")
    dataset = run_ensemble(None, moved, restraints, replace(density, source="renamed.mrc"), store,
                           4, 0.5, RefineOptions(**OPTIONS), batch_size=2, resume=True,
                           progress=False)  # all finished: nothing to submit, no client needed
    assert dataset["finished"].values.all()


@pytest.fixture(scope="module")
def tiny_series(helix):
    model, restraints, density = helix
    frames = [simulate_map(model, 3.0, xyz=model.xyz + [0.1 * k, 0, 0], grid=density)
              for k in range(3)]
    return frames


@pytest.fixture(scope="module")
def finished_series(client, helix, tiny_series, tmp_path_factory) -> Path:
    model, restraints, _ = helix
    path = tmp_path_factory.mktemp("series") / "series.zarr"
    run_series(client, model, restraints, MemoryMapSeries(tiny_series, 3.0), path,
               RefineOptions(**OPTIONS), mode="chained", models_per_map=2, perturb_rmsd=0.3,
               progress=False)
    return path


@pytest.mark.parametrize("change, item", [
    ("frame", "map series content"), ("mode", "--mode"), ("models_per_map", "--members"),
    ("reference_frame", "--reference-frame"), ("n_frames", "map series content")])
def test_series_resume_refuses_other_maps_or_parameters(helix, tiny_series, finished_series,
                                                         change, item):
    model, restraints, _ = helix
    frames = list(tiny_series)
    kwargs = dict(mode="chained", models_per_map=2, perturb_rmsd=0.3, reference_frame=None)
    if change == "frame":
        frames[0] = _changed_map(frames[0])  # not the reference frame: every frame counts
    elif change == "n_frames":
        frames.append(frames[-1])
    elif change == "mode":
        kwargs["mode"] = "independent"
    elif change == "models_per_map":
        kwargs["models_per_map"] = 3
    else:
        kwargs["reference_frame"] = 0
    before = tree(finished_series)
    with pytest.raises(InputError) as error:
        run_series(None, model, restraints, MemoryMapSeries(frames, 3.0), finished_series,
                   RefineOptions(**OPTIONS), resume=True, progress=False, **kwargs)
    assert str(error.value).startswith(f"{finished_series}: --resume: {item}"), str(error.value)
    assert tree(finished_series) == before
