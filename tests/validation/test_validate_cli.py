"""``varref validate`` on the command line."""

from __future__ import annotations

import csv
import json

import pytest
from validation_edits import simulated_map

from varref.cli import main
from varref.maps import write_map
from varref.validation import PER_RESIDUE_COLUMNS

CRAMBIN = "1crn"


@pytest.fixture
def crambin_path(read_shared_model):
    return read_shared_model(CRAMBIN).source


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_validate_writes_json_csv_and_plots(capsys, tmp_path, crambin_path, reference_data):
    status, out, err = run(capsys, "validate", crambin_path, "--reference-data", reference_data,
                           "--json", tmp_path / "report.json",
                           "--per-residue", tmp_path / "residues.csv",
                           "--plots", tmp_path / "val")
    assert status == 0, err
    assert "Clashscore" in out and "Ramachandran" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ramachandran"]["n_outliers"] == 0
    with open(tmp_path / "residues.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == report["model"]["n_residues"]
    assert list(rows[0]) == list(PER_RESIDUE_COLUMNS)
    assert (tmp_path / "val_ramachandran_general.png").stat().st_size > 1000


def test_validate_with_a_map(capsys, tmp_path, read_shared_model, reference_data):
    model = read_shared_model(CRAMBIN)
    write_map(simulated_map(model, 3.0), tmp_path / "sim.mrc")
    status, out, err = run(capsys, "validate", model.source, tmp_path / "sim.mrc",
                           "--resolution", 3.0, "--reference-data", reference_data)
    assert status == 0, err
    assert "CC_mask" in out and "EMRinger" in out


def test_map_without_resolution_is_refused(capsys, tmp_path, crambin_path):
    status, out, err = run(capsys, "validate", crambin_path, tmp_path / "any.mrc")
    assert status == 2
    assert err.startswith("varref: error: --resolution")


def test_missing_output_directory_fails_before_any_work(capsys, tmp_path, crambin_path,
                                                        reference_data):
    target = tmp_path / "absent" / "report.json"
    status, out, err = run(capsys, "validate", crambin_path, "--reference-data", reference_data,
                           "--json", target)
    assert status == 2 and "output directory" in err
    assert out == "" and not target.exists()


def test_missing_reference_data_directory_is_one_line_error(capsys, tmp_path, crambin_path):
    status, _, err = run(capsys, "validate", crambin_path, "--reference-data", tmp_path / "no")
    assert status == 2
    assert len(err.strip().splitlines()) == 1 and "reference-data directory not found" in err
