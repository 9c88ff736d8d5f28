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


def test_without_reference_data_no_molprobity_numbers_are_reported(read_shared_model,
                                                                    monkeypatch):
    pytest.importorskip("coot_headless_api")
    monkeypatch.delenv("VARREF_REFERENCE_DATA", raising=False)
    model = read_shared_model("3j6b_9")
    report = validate(model)
    assert report["reference_data"] is None
    rama = report["ramachandran"]
    # Coot's clipper tables give other numbers than MolProbity (15 outliers here, MolProbity
    # 8): they must not fill the fields that summaries and refinement tables quote
    assert rama["available"] is False and "--reference-data" in rama["reason"]
    assert "percent_outliers" not in rama and "n_outliers" not in rama
    assert all(row["rama_status"] is None for row in report["per_residue"])
    assert report["sources"]["ramachandran"] == "none"
    # Coot's analysis is kept apart and labelled
    coot = rama["coot"]
    assert "not the MolProbity Top8000 analysis" in coot["source"]
    assert coot["n_evaluated"] == 185 and coot["n_outliers"] == 15
    text = format_summary(report)
    assert "not evaluated: no --reference-data" in text
    assert "Coot/clipper tables (not MolProbity): 15 outliers, 159 favoured of 185" in text
    # rotamers are not invented from Coot's library frequencies
    assert report["rotamers"]["available"] is False
    assert "--reference-data" in report["rotamers"]["reason"]
    assert all(row["rotamer_status"] is None for row in report["per_residue"])


def test_coot_container_is_reused_without_carrying_one_model_into_the_next(read_shared_model):
    """One Coot container per process (creating one costs ~0.2 s): each analysis closes its
    molecule, so a model analysed after another gives what a fresh container gives."""
    from varref.validation import coot_fallback
    from varref.validation.residues import ResidueTable

    pytest.importorskip("coot_headless_api")
    first, second = (ResidueTable(read_shared_model(name)) for name in ("3j6b_9", "1crn"))
    coot_fallback._container = None
    fresh = coot_fallback.coot_ramachandran_analysis(second)
    container = coot_fallback._container
    coot_fallback.coot_ramachandran_analysis(first)
    reused = coot_fallback.coot_ramachandran_analysis(second)
    assert coot_fallback._container is container
    assert reused == fresh and reused["n_evaluated"] > 0
    # the molecules were closed: the container holds none of them
    assert not any(container.is_valid_model_molecule(i) for i in range(4))


def test_refinement_summary_quotes_no_ramachandran_without_reference_data(read_shared_model,
                                                                          monkeypatch):
    from varref.refinement.summary import summary_rows

    pytest.importorskip("coot_headless_api")
    monkeypatch.delenv("VARREF_REFERENCE_DATA", raising=False)
    report = validate(read_shared_model("1crn"))
    metrics = [row["metric"] for row in summary_rows(report, report)]
    assert "Bond r.m.s.d." in metrics
    assert not any(metric.startswith(("Ramachandran", "Rotamer")) for metric in metrics)


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


def test_geometry_section_is_the_heavy_atom_definition(read_shared_model, reference_data):
    """The report quotes geometry_statistics: bonds/angles among heavy atoms (MolProbity's
    convention), the with-H figures apart; 3J6B chain 9 carries 1,437 hydrogens."""
    from varref.engine.geometry_stats import geometry_statistics
    from varref.restraints import build_restraints

    model = read_shared_model("3j6b_9")
    assert model.is_hydrogen.sum() > 1000
    report = validate(model, reference_data=reference_data)
    expected = geometry_statistics(model.xyz, build_restraints(model))
    assert report["geometry"] == expected
    assert report["geometry"]["bonds"]["n"] < report["geometry"]["bonds_with_h"]["n"]
    text = format_summary(report)
    assert f"r.m.s.d. {expected['bonds']['rmsd']:.3f} Å" in text
    assert f"r.m.s.d. {expected['angles']['rmsd']:.3f}°" in text


def test_given_restraints_are_used_for_the_geometry(read_shared_model, reference_data):
    """A refinement's restraints (same topology) give the same geometry section as the
    ones validate builds; restraints of another model are refused, not misapplied."""
    import varref
    from varref.restraints import build_restraints

    model = read_shared_model("1crn")
    restraints = build_restraints(model)
    moved = model.with_xyz(varref.perturb(model, 0.3, seed=1, restraints=restraints))
    given = validate(moved, reference_data=reference_data, restraints=restraints)
    assert given["geometry"] == validate(moved, reference_data=reference_data)["geometry"]
    assert given["geometry"]["bonds"]["rmsd"] != validate(model, reference_data=reference_data,
                                                          restraints=restraints)["geometry"]["bonds"]["rmsd"]
    with pytest.raises(ValueError, match="restraints for"):
        validate(varref.example_helix(3), restraints=restraints)


def test_a_shared_topology_cache_gives_the_same_reports(read_shared_model, reference_data):
    """validate() twice with one TopologyCache (as the refine summary does for start and
    result) equals two independent calls; a clash topology of other atoms is rebuilt."""
    import varref
    from varref.validation import TopologyCache

    model = read_shared_model("1crn")
    moved = model.with_xyz(varref.perturb(model, 0.4, seed=2))
    cache = TopologyCache()
    first = validate(model, reference_data=reference_data, cache=cache)
    assert cache.restraints is not None and cache.clash_topology is not None
    second = validate(moved, reference_data=reference_data, cache=cache)
    assert first == validate(model, reference_data=reference_data)
    assert second == validate(moved, reference_data=reference_data)
    assert second["clashes"]["clashscore"] != first["clashes"]["clashscore"]
    helix = varref.example_helix(4)
    foreign = TopologyCache(clash_topology=cache.clash_topology)
    assert validate(helix, cache=foreign)["clashes"] == validate(helix)["clashes"]
    assert foreign.clash_topology is not cache.clash_topology


def test_refine_validates_its_start_and_result(reference_data):
    """refine(validation=True): the reports are validate()'s of the start and of the result
    (the start's computed beside the refinement), their map fit the refinement's own
    CC_mask and CC_box; with a re-blurred map (map_b) validation measures them on the map
    as given."""
    import varref

    model = varref.example_helix(10)
    density = varref.simulate_map(model, 3.0)
    start = varref.perturb(model, 0.4, seed=3)
    options = dict(xyz=start, macro_cycles=1, iterations=15, final_cc=False, fsc=False,
                   validation=True, reference_data=reference_data)
    result = varref.refine(model, density, 3.0, **options)
    for when, metrics, refined in (("before", result.before, result.start),
                                   ("after", result.after, result.model)):
        report = result.validation[when]
        expected = validate(refined, reference_data=reference_data)
        # compared as JSON: NaN (e.g. percentages of no rotamer) equals itself there
        def core(r):
            return json.dumps({k: v for k, v in r.items()
                               if k not in ("map_fit", "per_residue", "emringer")}, sort_keys=True)
        assert core(report) == core(expected)
        assert report["map_fit"]["cc_mask"] == metrics["cc_mask"]
        assert report["map_fit"]["cc_box"] == metrics["cc_box"]
    blurred = varref.refine(model, density, 3.0, map_b=20.0, **options)
    measured = validate(blurred.model, density.box_around(model.xyz, margin=8.0), 3.0,
                        reference_data=reference_data, with_emringer=False)["map_fit"]
    assert blurred.validation["after"]["map_fit"] == measured
    assert measured["cc_mask"] != blurred.after["cc_mask"]
    assert varref.refine(model, density, 3.0, **dict(options, validation=False)).validation == {}
