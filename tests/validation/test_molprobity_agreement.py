"""varref's validation against MolProbity's own code on every shared model.

The reference numbers (``molprobity_reference.json``) are produced by cctbx in the referee
venv with ``benchmarks/validation_referee.py`` (command at the top of that file); nothing
here is typed in by hand. Tolerances:

* Ramachandran favoured and outlier percentages: 0.5 percentage points (the brief's bound);
  the non-favoured residues themselves (class and status) must be the same ones;
* rotamer outlier percentage: 0.5 percentage points, and the same outlier residues
  (rotalyze counts every altloc conformer, varref the one it keeps: 0.06 points apart at
  most on these models);
* bond/angle r.m.s.d. over heavy atoms against ``shared/tools/referee.py``: 0.0005 Å and
  0.01 degrees, for models where both sides use the same restraints (no altlocs, no TER
  record inside a chain; see ``docs/methods-validation.md`` for the others).

Clashscore is not compared: the referee cannot compute it (the table records why).
"""

from __future__ import annotations

import json
from pathlib import Path

import gemmi
import pytest
from conftest import SHARED_DATA

from varref.validation.ramachandran import ramachandran_analysis
from varref.validation.residues import ResidueTable
from varref.validation.rotamers import rotamer_analysis

REFERENCE = json.loads((Path(__file__).with_name("molprobity_reference.json"))
                       .read_text(encoding="utf-8"))
MODELS = sorted(REFERENCE["models"])
PERCENT_TOLERANCE = 0.5
BOND_TOLERANCE = 0.0005
ANGLE_TOLERANCE = 0.01


@pytest.fixture(scope="module")
def shared_model():
    """``shared_model(key)`` -> Model of ``shared/data/<key>``, read once (skip if absent)."""
    from varref.model import read_model

    cache = {}

    def read(key: str):
        if key not in cache:
            path = SHARED_DATA / key
            if not path.is_file():
                pytest.skip(f"shared data not available: {key}")
            cache[key] = read_model(path)
        return cache[key]

    return read


def reference(key: str, section: str) -> dict:
    entry = REFERENCE["models"][key]
    if "error" in entry:
        pytest.fail(f"the referee could not analyse {key}: {entry['error']}")
    return entry[section]


def residue_key(chain, resseq, icode) -> tuple[str, int, str]:
    return str(chain), int(resseq), str(icode or "").strip()


def test_reference_table_covers_every_shared_model():
    if not SHARED_DATA.is_dir():
        pytest.skip("shared data not available")
    on_disk = sorted(p.relative_to(SHARED_DATA).as_posix()
                     for pattern in ("models/*.pdb", "models/*.cif", "maps/*/*.pdb",
                                     "maps/*/*.cif")
                     for p in SHARED_DATA.glob(pattern))
    assert on_disk == MODELS


@pytest.mark.parametrize("key", MODELS)
def test_ramachandran_agrees_with_molprobity(key, shared_model, rama_tables):
    expected = reference(key, "ramachandran")
    residues = ResidueTable(shared_model(key))
    result = ramachandran_analysis(residues, rama_tables)
    if expected["n_evaluated"] == 0:
        assert result["n_evaluated"] == 0
        return
    for field in ("percent_favoured", "percent_outliers"):
        assert result[field] == pytest.approx(expected[field], abs=PERCENT_TOLERANCE), field
    # the same residues are non-favoured, in the same class and with the same status
    ours = {residue_key(*(residues.identity(row["residue"])[k]
                          for k in ("chain", "resseq", "icode"))):
            (row["rama_class"], row["status"])
            for row in result["residues"] if row["status"] != "favoured"}
    theirs = {residue_key(row["chain"], row["resseq"], row["icode"]):
              (row["rama_class"], row["status"])
              for row in expected["not_favoured"] if row["altloc"] in ("", "A")}
    assert ours == theirs


@pytest.mark.parametrize("key", MODELS)
def test_rotamer_outliers_agree_with_molprobity(key, shared_model, rotamer_tables):
    expected = reference(key, "rotamers")
    residues = ResidueTable(shared_model(key))
    result = rotamer_analysis(residues, rotamer_tables)
    # both sides leave out the same residue types (no grid in the shared Top8000 copy)
    assert set(result["grid_missing_residue_types"]) <= set(
        REFERENCE["rotamer_types_not_evaluated"])
    if expected["n_evaluated"] == 0:
        assert result["n_evaluated"] == 0
        return
    assert result["percent_outliers"] == pytest.approx(expected["percent_outliers"],
                                                       abs=PERCENT_TOLERANCE)
    ours = {residue_key(*(residues.identity(row["residue"])[k]
                          for k in ("chain", "resseq", "icode")))
            for row in result["residues"] if row["status"] == "outlier"}
    theirs = {residue_key(row["chain"], row["resseq"], row["icode"])
              for row in expected["outliers"]}
    assert ours == theirs


def _same_restraints_as_referee(path: Path) -> bool:
    """True when referee.py's gemmi topology covers the restraints varref uses.

    It does not when the file has altlocs (the referee keeps every conformer, varref one) or a
    TER record inside a chain (gemmi then reads the rest of the chain as non-polymer and the
    referee loses those peptide links; varref's reader repairs this).
    """
    structure = gemmi.read_structure(str(path))
    if any(cra.atom.has_altloc() for cra in structure[0].all()):
        return False
    if path.suffix != ".pdb":
        return True
    ended: set[str] = set()
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("TER"):
            ended.add(line[21:22])
        elif line.startswith("ATOM") and line[21:22] in ended:  # ligands may follow a TER
            return False
    return True


@pytest.mark.parametrize("key", MODELS)
def test_bond_and_angle_rmsd_agree_with_the_referee(key, shared_model):
    from varref.engine.geometry_stats import geometry_statistics
    from varref.restraints import build_restraints

    expected = REFERENCE["models"][key]["geometry"]
    model = shared_model(key)
    if "error" in expected:
        pytest.skip(f"the referee has no geometry for {key}: {expected['error']}")
    if not _same_restraints_as_referee(SHARED_DATA / key):
        pytest.skip("altlocs or a TER inside a chain: the referee's restraints differ "
                    "(docs/methods-validation.md)")
    statistics = geometry_statistics(model.xyz, build_restraints(model))
    assert statistics["bonds"]["rmsd"] == pytest.approx(expected["bond_rmsd"],
                                                        abs=BOND_TOLERANCE)
    assert statistics["angles"]["rmsd"] == pytest.approx(expected["angle_rmsd"],
                                                         abs=ANGLE_TOLERANCE)


def test_no_restraint_joins_atoms_far_apart(shared_model):
    from varref.engine.geometry_stats import geometry_statistics
    from varref.restraints import build_restraints

    model = shared_model("maps/emd5168_factin/1J6Z.pdb")
    statistics = geometry_statistics(model.xyz, build_restraints(model))
    assert statistics["bonds"]["max_deviation"] < 1.0
