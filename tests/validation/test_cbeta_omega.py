"""C-beta deviations and cis/twisted peptides."""

from __future__ import annotations

import numpy as np
import pytest
from validation_edits import set_omega

from varref.validation.cbeta import (CBETA_OUTLIER, cbeta_deviations, ideal_cbeta,
                                     peptide_conformations)
from varref.validation.residues import ResidueTable, dihedral_deg


def test_ideal_cbeta_has_the_ideal_geometry(read_shared_model):
    model = read_shared_model("1crn")
    residues = ResidueTable(model)
    r = int(np.flatnonzero(residues.name == "LEU")[0])
    n, ca, c = (model.xyz[residues.atom(r, name)] for name in ("N", "CA", "C"))
    cb = ideal_cbeta(n, ca, c, "LEU")
    assert np.linalg.norm(cb - ca) == pytest.approx(1.530, abs=1e-9)
    # L-amino acid: the N-C-CA-CB dihedral is about +123 degrees (MolProbity ideal 122.8)
    assert dihedral_deg(n, c, ca, cb) == pytest.approx(122.7, abs=1.0)


@pytest.mark.parametrize("name", ["1crn", "6out"])
def test_deposited_models_have_small_cbeta_deviations(read_shared_model, name):
    result = cbeta_deviations(ResidueTable(read_shared_model(name)))
    deviations = np.array([row["deviation"] for row in result["residues"]])
    assert result["n_outliers"] == 0
    assert np.median(deviations) < 0.1


def test_cbeta_moved_half_an_angstrom_is_an_outlier(read_shared_model):
    model = read_shared_model("1crn")
    residues = ResidueTable(model)
    before = cbeta_deviations(residues)
    r = int(np.flatnonzero(residues.name == "THR")[0])
    cb = residues.atom(r, "CB")
    xyz = model.xyz.copy()
    xyz[cb] += np.array([0.5, 0.0, 0.0])
    after = cbeta_deviations(ResidueTable(model.with_xyz(xyz)))
    row = next(row for row in after["residues"] if row["residue"] == r)
    assert row["outlier"] and row["deviation"] >= CBETA_OUTLIER
    assert after["n_outliers"] == before["n_outliers"] + 1
    assert residues.label[r] in after["outliers"]


def test_cis_and_twisted_peptides_are_flagged(read_shared_model):
    model = read_shared_model("1crn")
    residues = ResidueTable(model)
    before = peptide_conformations(residues)
    assert before["n_cis_general"] == before["n_twisted"] == before["n_cis_proline"] == 0
    r = int(np.flatnonzero(residues.label == "A/ALA 9")[0])
    cis = peptide_conformations(ResidueTable(set_omega(model, r, 5.0)))
    assert cis["n_cis_general"] == 1 and cis["cis"] == ["A/ALA 9"]
    twisted = peptide_conformations(ResidueTable(set_omega(model, r, 100.0)))
    assert twisted["n_twisted"] == 1 and twisted["twisted"] == ["A/ALA 9"]
    assert twisted["n_peptides"] == before["n_peptides"]


def test_cis_peptide_before_proline_is_counted_as_cis_proline(read_shared_model):
    model = read_shared_model("1ubq")
    residues = ResidueTable(model)
    proline = int(np.flatnonzero(residues.label == "A/PRO 19")[0])
    result = peptide_conformations(ResidueTable(set_omega(model, proline, 0.0)))
    assert result["n_cis_proline"] == 1 and result["n_cis_general"] == 0
