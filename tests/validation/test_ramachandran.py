"""Ramachandran analysis: deposited models, MolProbity classes, constructed outliers."""

from __future__ import annotations

import numpy as np
import pytest
from validation_edits import set_phi, set_psi

from varref.errors import InputError
from varref.validation.ramachandran import load_ramachandran_tables, ramachandran_analysis
from varref.validation.residues import ResidueTable


def analyse(model, tables):
    return ramachandran_analysis(ResidueTable(model), tables)


@pytest.mark.parametrize("name", ["1ubq", "6out"])
def test_well_refined_models_are_mostly_favoured(read_shared_model, rama_tables, name):
    # MolProbity's goals are > 98 % favoured and < 0.2 % outliers; well-refined deposited
    # models sit near them, so > 95 % and essentially no outliers is the literature range
    result = analyse(read_shared_model(name), rama_tables)
    assert result["n_evaluated"] > 70
    assert result["percent_favoured"] > 95.0
    assert result["percent_outliers"] < 0.5


def test_crambin_has_no_outliers(read_shared_model, rama_tables):
    result = analyse(read_shared_model("1crn"), rama_tables)
    assert result["n_outliers"] == 0
    # 46 residues, ends excluded
    assert result["n_evaluated"] == 44


def test_classes_follow_molprobity_precedence(read_shared_model, rama_tables):
    model = read_shared_model("1ubq")
    residues = ResidueTable(model)
    result = analyse(model, rama_tables)
    by_label = {residues.label[row["residue"]]: row["rama_class"] for row in result["residues"]}
    assert by_label["A/GLY 10"] == "glycine"
    assert by_label["A/ILE 36"] == "pre-proline"      # pre-Pro wins over Ile/Val
    assert by_label["A/PRO 37"] == "trans-proline"    # Pro wins over pre-Pro (Pro 38 next)
    assert by_label["A/ILE 3"] == "isoleucine-valine"
    assert by_label["A/LYS 6"] == "general"


def test_residue_twisted_into_a_disallowed_region_is_an_outlier(read_shared_model, rama_tables):
    model = read_shared_model("1ubq")
    residues = ResidueTable(model)
    target = int(np.flatnonzero(residues.label == "A/LYS 6")[0])
    before = analyse(model, rama_tables)
    assert target not in [row["residue"] for row in before["residues"]
                          if row["status"] == "outlier"]
    # phi = psi = +120: empty for every non-Gly residue, favoured for glycine
    edited = set_psi(set_phi(model, target, 120.0), target, 120.0)
    after = analyse(edited, rama_tables)
    row = next(r for r in after["residues"] if r["residue"] == target)
    assert row["phi"] == pytest.approx(120.0, abs=1e-6)
    assert row["psi"] == pytest.approx(120.0, abs=1e-6)
    assert row["status"] == "outlier"
    assert after["n_outliers"] == before["n_outliers"] + 1


def test_glycine_is_favoured_where_other_residues_are_outliers(read_shared_model, rama_tables):
    model = read_shared_model("1ubq")
    residues = ResidueTable(model)
    glycine = int(np.flatnonzero(residues.label == "A/GLY 47")[0])
    edited = set_psi(set_phi(model, glycine, 120.0), glycine, 120.0)
    row = next(r for r in analyse(edited, rama_tables)["residues"] if r["residue"] == glycine)
    assert row["rama_class"] == "glycine"
    assert row["status"] == "favoured"


def test_incomplete_reference_directory_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="rama8000"):
        load_ramachandran_tables(tmp_path)
