"""Bond and angle deviations (through varref.restraints.deviations)."""

from __future__ import annotations

import numpy as np

from varref.restraints import build_restraints
from varref.validation.geometry import geometry_deviations


def test_deposited_model_has_small_deviations(read_shared_model):
    result = geometry_deviations(read_shared_model("1crn"))
    assert set(result) == {"bonds", "angles"}  # no hydrogens in 1crn
    assert 0.0 < result["bonds"]["rmsd"] < 0.03
    assert 0.5 < result["angles"]["rmsd"] < 3.0
    for stats in result.values():
        assert stats["max_deviation"] >= stats["rmsd"]
        # the CCP4 library sigmas are tight (0.01 Å for N-CA); a 1981 model has a few
        assert 0 <= stats["n_outliers_4sigma"] < 0.1 * stats["n"]


def test_a_stretched_bond_is_a_four_sigma_outlier(read_shared_model):
    model = read_shared_model("1crn")
    restraints = build_restraints(model)
    before = geometry_deviations(model, restraints)
    # stretch the first CA-CB bond by 0.3 Å (sigma ~0.02 Å) by moving CB outwards
    bonds = restraints.bonds.atoms
    k = next(k for k, (i, j) in enumerate(bonds)
             if {model.atom_name[i], model.atom_name[j]} == {"CA", "CB"})
    i, j = bonds[k] if model.atom_name[bonds[k][1]] == "CB" else bonds[k][::-1]
    xyz = model.xyz.copy()
    direction = (xyz[j] - xyz[i]) / np.linalg.norm(xyz[j] - xyz[i])
    xyz[j] += 0.3 * direction
    after = geometry_deviations(model.with_xyz(xyz), restraints)
    assert after["bonds"]["n_outliers_4sigma"] > before["bonds"]["n_outliers_4sigma"]
    assert after["bonds"]["max_deviation"] >= 0.25
    assert after["bonds"]["rmsd"] > before["bonds"]["rmsd"]
