"""Model reading and writing: round trips, multi-model files, altlocs, H, waters, nucleic acids."""

from __future__ import annotations

import gemmi
import numpy as np
import pytest

from varref.model import read_model, read_models, write_ensemble, write_model

ROUND_TRIP_MODELS = ["models/1crn.pdb", "models/1crn.cif", "models/1d66.pdb",
                     "models/6v5b_drna.pdb", "models/5i55.cif", "models/1ubq.pdb"]

IDENTIFIERS = ["element", "atom_name", "residue_name", "chain_id", "residue_number",
               "insertion_code", "is_hydrogen", "is_water", "residue_index"]


def assert_same_model(a, b, xyz_tol):
    assert a.n_atoms == b.n_atoms
    np.testing.assert_allclose(a.xyz, b.xyz, atol=xyz_tol)
    for name in IDENTIFIERS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_allclose(a.b_iso, b.b_iso, atol=0.01)
    np.testing.assert_allclose(a.occupancy, b.occupancy, atol=0.01)


@pytest.mark.parametrize("relative", ROUND_TRIP_MODELS)
@pytest.mark.parametrize("suffix", [".pdb", ".cif"])
def test_round_trip_keeps_coordinates_and_identifiers(shared, tmp_path, relative, suffix):
    original = read_model(shared(relative))
    out = tmp_path / f"out{suffix}"
    write_model(original, out)
    again = read_model(out)
    # PDB stores 3 decimals; mmCIF as written by gemmi keeps at least that
    assert_same_model(original, again, xyz_tol=5.1e-4)


def test_written_coordinates_are_the_new_ones(shared, tmp_path):
    model = read_model(shared("models/1crn.pdb"))
    shifted = model.xyz + np.array([1.0, -2.0, 0.5])
    write_model(model, tmp_path / "shifted.cif", xyz=shifted)
    np.testing.assert_allclose(read_model(tmp_path / "shifted.cif").xyz, shifted, atol=1e-3)


def test_flat_arrays_describe_the_file(shared):
    model = read_model(shared("models/1d66.pdb"))
    assert model.xyz.shape == (1762, 3) and model.xyz.dtype == np.float64
    assert model.is_water.sum() == 51 * 1  # 51 waters, oxygen only
    assert {"DA", "DC", "DG", "DT"} <= set(model.residue_name)  # DNA kept
    assert model.atomic_number[model.element == "C"].tolist() == [6] * int((model.element == "C").sum())
    assert len(model.residue_labels()) == model.n_residues


def test_hydrogens_are_kept(shared):
    model = read_model(shared("models/3j6r.pdb"))
    assert model.is_hydrogen.sum() == 5748
    assert set(model.element[model.is_hydrogen]) == {"H"}


def test_multi_model_file_and_ensemble_writer(shared, tmp_path):
    model = read_model(shared("models/1crn.pdb"))
    rng = np.random.default_rng(0)
    members = [model.xyz + rng.normal(scale=0.3, size=model.xyz.shape) for _ in range(3)]
    for suffix in (".pdb", ".cif"):
        path = tmp_path / f"ensemble{suffix}"
        write_ensemble(model, members, path)
        read_back = read_models(path)
        assert len(read_back) == 3
        for member, xyz in zip(read_back, members):
            np.testing.assert_allclose(member.xyz, xyz, atol=5.1e-4)
            np.testing.assert_array_equal(member.atom_name, model.atom_name)
        assert read_model(path, model_index=2).xyz == pytest.approx(members[2], abs=5.1e-4)
    records = [line[:6] for line in (tmp_path / "ensemble.pdb").read_text().splitlines()]
    assert records.count("MODEL ") == 3 and records.count("ENDMDL") == 3


ALTLOC_PDB = """\
ATOM      1  N   SER A   1       0.000   0.000   0.000  1.00 10.00           N
ATOM      2  CA  SER A   1       1.458   0.000   0.000  1.00 10.00           C
ATOM      3  C   SER A   1       2.009   1.420   0.000  1.00 10.00           C
ATOM      4  O   SER A   1       1.246   2.390   0.000  1.00 10.00           O
ATOM      5  CB ASER A   1       1.990  -0.760  -1.220  0.30 10.00           C
ATOM      6  OG ASER A   1       1.600  -2.100  -1.200  0.30 10.00           O
ATOM      7  CB BSER A   1       1.990  -0.770   1.220  0.70 10.00           C
ATOM      8  OG BSER A   1       1.500  -2.000   1.300  0.70 10.00           O
END
"""


def test_altloc_keeps_highest_occupancy_or_first(tmp_path):
    path = tmp_path / "altloc.pdb"
    path.write_text(ALTLOC_PDB)
    by_occupancy = read_model(path)
    assert by_occupancy.n_atoms == 6
    assert by_occupancy.xyz[4, 2] == pytest.approx(1.22)  # conformer B (0.7) kept
    first = read_model(path, altloc="first")
    assert first.xyz[4, 2] == pytest.approx(-1.22)  # conformer A kept
    # the written file has no altlocs left
    write_model(by_occupancy, tmp_path / "out.pdb")
    st = gemmi.read_structure(str(tmp_path / "out.pdb"))
    assert all(not atom.has_altloc() for res in st[0][0] for atom in res)
