"""validate(): the report's structure, per-residue table, sources and text summary."""

from __future__ import annotations

import json

import numpy as np
import pytest
from validation_edits import simulated_map

from varref.errors import InputError
from varref.validation import PER_RESIDUE_COLUMNS, format_summary, json_ready, validate

TOP_LEVEL_KEYS = {"model", "reference_data", "sources", "geometry", "ramachandran", "rotamers",
                  "cbeta", "peptides", "clashes", "map_fit", "emringer", "per_residue"}


@pytest.fixture(scope="module")
def ubiquitin_report(read_shared_model, reference_data):
    return validate(read_shared_model("1ubq"), reference_data=reference_data)


def test_report_has_every_section_and_a_row_per_residue(ubiquitin_report, read_shared_model):
    report = ubiquitin_report
    assert set(report) == TOP_LEVEL_KEYS
    assert report["map_fit"] is None and report["emringer"] is None
    rows = report["per_residue"]
    assert len(rows) == read_shared_model("1ubq").n_residues
    assert all(set(row) == set(PER_RESIDUE_COLUMNS) for row in rows)
    # the per-residue table agrees with the summaries
    assert sum(row["rama_status"] == "outlier" for row in rows) == \
        report["ramachandran"]["n_outliers"]
    assert sum(row["rotamer_status"] == "outlier" for row in rows) == \
        report["rotamers"]["n_outliers"]
    assert sum(bool(row["cbeta_outlier"]) for row in rows) == report["cbeta"]["n_outliers"]
    # each clash touches one or two residues
    touched = sum(row["n_clashes"] for row in rows)
    assert report["clashes"]["n_clashes"] <= touched <= 2 * report["clashes"]["n_clashes"]
    assert "Top8000" in report["sources"]["ramachandran"]


def test_report_is_json_serialisable_without_nan(ubiquitin_report):
    text = json.dumps(json_ready(ubiquitin_report), allow_nan=False)
    assert json.loads(text)["model"]["n_atoms"] == ubiquitin_report["model"]["n_atoms"]


def test_summary_lists_the_headline_numbers(ubiquitin_report):
    text = format_summary(ubiquitin_report)
    for label in ("Bond lengths", "Bond angles", "Clashscore", "Ramachandran", "Rotamers",
                  "C-beta", "Peptides", "grid missing"):
        assert label in text
    assert f"{ubiquitin_report['clashes']['clashscore']:.2f}" in text


def test_without_reference_data_ramachandran_comes_from_coot(read_shared_model, monkeypatch):
    pytest.importorskip("coot_headless_api")
    monkeypatch.delenv("VARREF_REFERENCE_DATA", raising=False)
    report = validate(read_shared_model("1crn"))
    assert report["reference_data"] is None
    assert "coot-headless-api" in report["sources"]["ramachandran"]
    assert report["ramachandran"]["n_evaluated"] == 44
    assert report["ramachandran"]["n_outliers"] == 0
    # rotamers are not invented from Coot's library frequencies
    assert report["rotamers"]["available"] is False
    assert "--reference-data" in report["rotamers"]["reason"]
    assert all(row["rotamer_status"] is None for row in report["per_residue"])


def test_reference_data_from_the_environment(read_shared_model, reference_data, monkeypatch):
    monkeypatch.setenv("VARREF_REFERENCE_DATA", str(reference_data))
    report = validate(read_shared_model("1crn"))
    assert report["reference_data"] == str(reference_data)
    monkeypatch.setenv("VARREF_REFERENCE_DATA", str(reference_data / "missing"))
    with pytest.raises(InputError, match="VARREF_REFERENCE_DATA"):
        validate(read_shared_model("1crn"))


def test_map_sections_are_filled_with_a_map(read_shared_model, reference_data):
    model = read_shared_model("1crn")
    report = validate(model, simulated_map(model, 3.0), 3.0, reference_data)
    assert report["map_fit"]["available"] and report["map_fit"]["cc_mask"] > 0.8
    assert np.isfinite(report["emringer"]["score"])
    assert sum(row["cc"] is not None for row in report["per_residue"]) == model.n_residues
    no_resolution = validate(model, simulated_map(model, 3.0), None, reference_data)
    assert no_resolution["map_fit"]["available"] is False
    assert "Model vs map" in format_summary(report)
