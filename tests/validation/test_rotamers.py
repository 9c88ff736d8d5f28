"""Rotamer analysis: deposited models, missing grids, constructed non-rotameric side chains."""

from __future__ import annotations

import numpy as np
import pytest
from validation_edits import rotate_about_axis, set_chi1

from varref.validation.residues import ResidueTable
from varref.validation.rotamers import GRID_MISSING, load_rotamer_tables, rotamer_analysis


def analyse(model, tables):
    return rotamer_analysis(ResidueTable(model), tables)


def row_of(result, residue):
    return next(row for row in result["residues"] if row["residue"] == residue)


def test_modern_cryoem_model_has_few_rotamer_outliers(read_shared_model, rotamer_tables):
    result = analyse(read_shared_model("6out"), rotamer_tables)
    assert result["n_evaluated"] > 1000
    assert result["percent_outliers"] < 1.0   # MolProbity goal: < 0.3 %
    assert result["percent_favoured"] > 95.0


def test_arg_and_lys_are_reported_not_evaluated_when_their_grids_are_absent(
        read_shared_model, rotamer_tables):
    if rotamer_tables["ARG"] is not None or rotamer_tables["LYS"] is not None:
        pytest.skip("this reference-data copy has the Arg/Lys grids")
    model = read_shared_model("1ubq")
    residues = ResidueTable(model)
    result = analyse(model, rotamer_tables)
    n_arg_lys = int(np.count_nonzero(np.isin(residues.name, ["ARG", "LYS"])))
    assert result["n_not_evaluated_grid_missing"] == n_arg_lys == 11
    assert result["grid_missing_residue_types"] == ["ARG", "LYS"]
    missing = [row for row in result["residues"] if row["status"] == GRID_MISSING]
    assert all(row["percentile"] is None and row["chis"] is not None for row in missing)
    # the percentages are over evaluated side chains only
    assert result["n_evaluated"] == len(result["residues"]) - n_arg_lys - \
        result["n_not_evaluated_missing_atoms"]


def test_leucine_with_chi1_zero_is_an_outlier(read_shared_model, rotamer_tables):
    model = read_shared_model("1ubq")
    residues = ResidueTable(model)
    leucine = int(np.flatnonzero(residues.label == "A/LEU 43")[0])
    before = analyse(model, rotamer_tables)
    assert row_of(before, leucine)["status"] == "favoured"
    edited = set_chi1(model, leucine, 0.0)
    after = analyse(edited, rotamer_tables)
    row = row_of(after, leucine)
    assert row["chis"][0] == pytest.approx(0.0, abs=1e-6)
    assert row["status"] == "outlier"
    assert after["n_outliers"] == before["n_outliers"] + 1


def test_symmetric_side_chain_turned_half_a_turn_keeps_its_verdict(read_shared_model,
                                                                     rotamer_tables):
    # rotating the carboxylate 180 degrees about CB-CG swaps OD1 and OD2 (equivalent atoms)
    model = read_shared_model("1ubq")
    residues = ResidueTable(model)
    aspartate = int(np.flatnonzero(residues.label == "A/ASP 52")[0])
    cb, cg = (model.xyz[residues.atom(aspartate, name)] for name in ("CB", "CG"))
    oxygens = [residues.atom(aspartate, "OD1"), residues.atom(aspartate, "OD2")]
    xyz = model.xyz.copy()
    xyz[oxygens] = rotate_about_axis(xyz[oxygens], cb, cg - cb, 180.0)
    before = row_of(analyse(model, rotamer_tables), aspartate)
    after = row_of(analyse(model.with_xyz(xyz), rotamer_tables), aspartate)
    assert abs(after["chis"][1] - before["chis"][1]) == pytest.approx(180.0, abs=1e-6)
    assert after["percentile"] == pytest.approx(before["percentile"], abs=1e-6)
    assert after["status"] == before["status"] == "favoured"


def test_grids_can_be_read_from_a_flat_directory(tmp_path, reference_data):
    # cctbx's rotarama_data layout: every grid file in one folder
    source = reference_data / "Top8000_rotamer_pct_contour_grids" / "rota8000-leu.data"
    (tmp_path / source.name).write_bytes(source.read_bytes())
    tables = load_rotamer_tables(tmp_path)
    assert tables["LEU"] is not None and tables["VAL"] is None
