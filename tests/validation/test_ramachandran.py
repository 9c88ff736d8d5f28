"""Ramachandran analysis: deposited models, MolProbity classes, constructed outliers."""

from __future__ import annotations

import numpy as np
import pytest
from validation_edits import set_omega, set_phi, set_psi

from varref.errors import InputError
from varref.model import Model
from varref.validation.ramachandran import (load_ramachandran_tables, ramachandran_analysis,
                                            ramachandran_residues)
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


# ------------------------------------------------------------------ which residues, which class
# The expected sets below are what cctbx's molprobity.ramalyze returned for the same edits of
# 1UBQ (checked in the referee venv when these rules were written).


def evaluated_numbers(model) -> set[int]:
    residues = ResidueTable(model)
    return {int(residues.number[r]) for r in ramachandran_residues(residues)}


def edited_ubiquitin(read_shared_model, edit) -> Model:
    structure = read_shared_model("1ubq").structure.clone()
    chain = structure[0]["A"]
    edit({r.seqid.num: r for r in chain})
    return Model.from_structure(structure)


def test_ubiquitin_evaluates_every_residue_but_the_chain_ends(read_shared_model):
    assert evaluated_numbers(read_shared_model("1ubq")) == set(range(2, 76))


def _delete_atom(residue, name):
    del residue[[a.name for a in residue].index(name)]


@pytest.mark.parametrize("number, atom, skipped", [
    (30, "CA", {29, 30}),   # the residue before needs N, CA and C of its successor
    (40, "C", {39, 40, 41}),
    (50, "N", {49, 50}),
])
def test_residues_next_to_missing_backbone_atoms_are_skipped(read_shared_model, number, atom,
                                                             skipped):
    model = edited_ubiquitin(read_shared_model,
                             lambda by_number: _delete_atom(by_number[number], atom))
    assert set(range(2, 76)) - evaluated_numbers(model) == skipped


def test_modified_residues_are_skipped_with_their_neighbours_but_mse_is_evaluated(
        read_shared_model):
    def edit(by_number):
        by_number[20].name = "SEP"  # iotbx class modified_amino_acid: not evaluated
        by_number[60].name = "UNK"  # class other
        by_number[8].name = "MSE"   # common_amino_acid, like MET
    model = edited_ubiquitin(read_shared_model, edit)
    assert set(range(2, 76)) - evaluated_numbers(model) == {19, 20, 21, 59, 60, 61}


@pytest.mark.parametrize("omega, expected", [
    (0.0, "cis-proline"), (60.0, "cis-proline"), (-89.0, "cis-proline"),
    (91.0, "trans-proline"), (-150.0, "trans-proline"), (180.0, "trans-proline"),
])
def test_proline_class_splits_twisted_peptides_at_90_degrees(read_shared_model, rama_tables,
                                                             omega, expected):
    # ramalyze's is_cislike_peptide: -90 < omega < 90 goes to the cis-Pro plot
    model = read_shared_model("1ubq")
    residues = ResidueTable(model)
    proline = int(np.flatnonzero(residues.label == "A/PRO 37")[0])
    edited = set_omega(model, proline, omega)
    row = next(r for r in analyse(edited, rama_tables)["residues"] if r["residue"] == proline)
    assert row["rama_class"] == expected


def test_peptide_link_needs_c_n_below_2_angstrom(read_shared_model):
    model = read_shared_model("1ubq")
    residues = ResidueTable(model)
    k = int(np.flatnonzero(residues.label == "A/GLU 24")[0])
    c, n = residues.atom(k, "C"), residues.atom(k + 1, "N")
    for distance, linked in ((1.99, True), (2.01, False)):
        xyz = model.xyz.copy()
        direction = (xyz[n] - xyz[c]) / np.linalg.norm(xyz[n] - xyz[c])
        moved = model.residue_index > k
        xyz[moved] += (xyz[c] + distance * direction) - xyz[n]
        table = ResidueTable(model.with_xyz(xyz))
        assert bool(table.following[k] == k + 1) is linked
        assert bool(table.previous[k + 1] == k) is linked
