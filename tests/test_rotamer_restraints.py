"""Rotamer library, chi finding, the rotamer restraint term and the rotamer fit of outliers."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests.conftest import SHARED, shared_file
from tests.engine.gradient_check import numerical_gradient
from varref.model import read_model
from varref.refinement.lbfgs import minimise_lbfgs
from varref.refinement.objective import Objective
from varref.refinement.rotamer_fit import (
    CHANGED,
    SKIPPED_BONDED,
    bond_neighbours,
    downstream_atoms,
    fit_rotamer_outliers,
    rotamer_outliers,
    set_chis,
)
from varref.refinement.terms import rotamer as rotamer_term
from varref.refinement.terms.base import Term, TermSetup
from varref.refinement.terms.geometry import GeometryTerm
from varref.restraints import TorsionRestraints, build_restraints
from varref.restraints.rotamers import (
    BASIN_MIN,
    chi_deltas,
    load_rotamer_library,
    nearest_rotamer,
    side_chain_chis,
)
from varref.simulate import simulate_map
from varref.validation.residues import ResidueTable
from varref.validation.rotamers import (
    ALLOWED,
    FAVOURED,
    OUTLIER,
    classify,
    fold_symmetric,
    load_rotamer_tables,
    rotamer_analysis,
)

TOP8000 = SHARED / "validation" / "top8000"
TOOL = Path(__file__).resolve().parents[1] / "tools" / "make_rotamer_library.py"
RTOL = 1e-4


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ubiquitin():
    model = read_model(shared_file("models/1ubq.pdb"))
    return model, build_restraints(model)


@pytest.fixture(scope="module")
def rotamer_tables():
    if not (TOP8000 / "Top8000_rotamer_pct_contour_grids").is_dir():
        pytest.skip("shared Top8000 reference data not available")
    return load_rotamer_tables(TOP8000)


@pytest.fixture(scope="module")
def ubiquitin_map(ubiquitin):
    model, _ = ubiquitin
    return simulate_map(model, 3.0).normalised()


def _setup(model, restraints, start=None, density=None, **options):
    start = model.xyz[np.newaxis].copy() if start is None else start
    return TermSetup(model=model, restraints=restraints, packed=None, density=density,
                     options=SimpleNamespace(**options), start=start)


def _row(chis, model, label):
    residue = model.residue_labels().index(label)
    return int(np.flatnonzero(chis.residue == residue)[0])


def _set_residue_chis(model, restraints, xyz, chis, row, targets):
    """``xyz`` with the chis of side chain ``row`` of ``chis`` set to ``targets``."""
    neighbours = bond_neighbours(model.n_atoms, restraints.bonds.atoms)
    n = int(chis.n_chi[row])
    quadruples = chis.atoms[row, :n]
    moving = [downstream_atoms(neighbours, int(q[1]), int(q[2])) for q in quadruples]
    return set_chis(xyz, quadruples, moving, np.asarray(targets, float), chis.period[row, :n])




# --------------------------------------------------------------------------- library


def test_shipped_library_holds_the_top8000_rotamers():
    library = load_rotamer_library()  # from the package: no ../shared needed
    assert sorted(library.residues) == sorted(
        ["ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "HIS", "ILE", "LEU", "LYS", "MET", "PHE",
         "PRO", "SER", "THR", "TRP", "TYR", "VAL"])
    assert sum(len(r) for r in library.residues.values()) == 212
    leucine = library.get("LEU")
    mt = leucine.names.index("mt")
    assert leucine.names[0] == "mt"  # ordered by frequency
    np.testing.assert_allclose(leucine.chi[mt], [-66.0, 174.0])
    np.testing.assert_allclose(leucine.sigma[mt], [8.2, 8.1])
    assert library.get("MSE") is library.get("MET")
    assert library.get("ALA") is None and library.get("GLY") is None
    # the symmetric last chi is folded into [0, 180): Phe p90 is listed at chi2 = -90
    phe = library.get("PHE")
    assert phe.chi[phe.names.index("p90"), 1] == 90.0
    assert list(phe.period) == [1, 2] and list(library.get("GLU").period) == [1, 1, 2]
    assert len(library.get("LYS")) == 46 and len(library.get("ARG")) == 60


def test_shipped_library_is_what_the_tool_derives(tmp_path):
    if not (TOP8000 / "Top8000_rotamer_central_values").is_dir():
        pytest.skip("shared Top8000 central values not available")
    import importlib.util
    from importlib import resources

    spec = importlib.util.spec_from_file_location("make_rotamer_library", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    output = tmp_path / "library.json"
    assert module.main(["--top8000", str(TOP8000), "--output", str(output)]) == 0
    shipped = resources.files("varref.data").joinpath("rotamer_library.json").read_text()
    assert output.read_text() == shipped


def test_every_rotamer_centre_is_inside_the_validation_grids(rotamer_tables):
    # centres, chi definitions and the symmetric fold must agree with validation: every
    # centre of a residue type with a grid is favoured or allowed, nearly all favoured
    library = load_rotamer_library()
    verdicts = []
    for resname, rotamers in library.residues.items():
        table = rotamer_tables.get(resname)
        if table is None:
            continue
        for centre in rotamers.chi:
            verdicts.append(classify(float(table.value_at(
                fold_symmetric(resname, centre[:table.n_dim])))))
    assert len(verdicts) > 100
    assert OUTLIER not in verdicts
    assert verdicts.count(FAVOURED) >= 0.9 * len(verdicts)


# --------------------------------------------------------------------------- chis


@pytest.mark.parametrize("name", ["1ubq", "1crn", "6out"])
def test_chis_and_basins_agree_with_validation(name, rotamer_tables):
    model = read_model(shared_file(f"models/{name}.pdb"))
    chis = side_chain_chis(model)
    rows = {row["residue"]: row for row in
            rotamer_analysis(ResidueTable(model), rotamer_tables)["residues"]
            if row["chis"] is not None}
    # the same side chains, the same chi values
    assert sorted(rows) == chis.residue.tolist()
    for i, residue in enumerate(chis.residue):
        n = int(chis.n_chi[i])
        np.testing.assert_allclose(chis.chis[i, :n], rows[int(residue)]["chis"], atol=1e-9)
        assert np.all(np.isnan(chis.chis[i, n:]))
    # nearly every side chain that validation accepts lies in the basin of its rotamer
    accepted = np.array([rows[int(r)]["status"] in (FAVOURED, ALLOWED) for r in chis.residue])
    fraction = chis.in_basin[accepted].mean()
    print(f"{name}: {fraction:.3f} of {accepted.sum()} favoured/allowed side chains in a basin")
    assert fraction >= 0.95


def test_nearest_rotamer_and_basin_rule():
    leucine = load_rotamer_library().get("LEU")
    tp = leucine.names.index("tp")
    index, distance, delta = nearest_rotamer(leucine, leucine.chi[tp])
    assert (leucine.names[index], distance) == ("tp", 0.0)
    # periodic: 360 degrees away is the same point
    assert nearest_rotamer(leucine, leucine.chi[tp] + [360.0, -360.0])[0] == tp
    index, _, delta = nearest_rotamer(leucine, leucine.chi[tp] + [BASIN_MIN - 5.0, 0.0])
    assert index == tp and np.all(np.abs(delta) <= leucine.basin_half_width()[tp])
    _, _, delta = nearest_rotamer(leucine, leucine.chi[tp] + [BASIN_MIN + 5.0, 0.0])
    assert np.abs(delta[0]) > leucine.basin_half_width()[nearest_rotamer(
        leucine, leucine.chi[tp] + [BASIN_MIN + 5.0, 0.0])[0], 0]
    # symmetric chi: a ring turned by 180 degrees (CD1/CD2 swapped) is the same rotamer
    phe = load_rotamer_library().get("PHE")
    m80 = phe.names.index("m-80")
    assert nearest_rotamer(phe, phe.chi[m80] + [0.0, 180.0])[:2] == (m80, 0.0)
    np.testing.assert_allclose(chi_deltas([10.0, 175.0], [0.0, -5.0], [1, 2]), [10.0, 0.0])


def test_chi_setting_moves_the_far_side_and_keeps_every_bond(ubiquitin):
    model, restraints = ubiquitin
    chis = side_chain_chis(model)
    row = _row(chis, model, "A/LYS 33")
    xyz = _set_residue_chis(model, restraints, model.xyz, chis, row, [-65.0, 175.0, 60.0, -70.0])
    after = side_chain_chis(model, xyz)
    np.testing.assert_allclose(after.chis[row], [-65.0, 175.0, 60.0, -70.0], atol=1e-9)
    bonds = restraints.bonds.atoms
    np.testing.assert_allclose(np.linalg.norm(xyz[bonds[:, 0]] - xyz[bonds[:, 1]], axis=1),
                               np.linalg.norm(model.xyz[bonds[:, 0]] - model.xyz[bonds[:, 1]],
                                              axis=1), atol=1e-9)
    moved = np.flatnonzero(np.any(np.abs(xyz - model.xyz) > 1e-9, axis=1))
    assert sorted(model.atom_name[moved]) == ["CD", "CE", "CG", "NZ"]
    # a ring bond cannot be turned, and a disulfide leaves the residue
    neighbours = bond_neighbours(model.n_atoms, restraints.bonds.atoms)
    pro = _row(chis, model, "A/PRO 19")
    q = chis.atoms[pro, 0]
    assert downstream_atoms(neighbours, int(q[1]), int(q[2])) is None


# --------------------------------------------------------------------------- the term


def test_term_gradient_matches_finite_differences(ubiquitin):
    model, restraints = ubiquitin
    term = rotamer_term.rotamer_restraints(model)
    assert isinstance(term, Term)
    chis = side_chain_chis(model)
    # residuals across the whole potential: near the centre, at the force peak, on the
    # decaying flank and beyond the basin, plus noise on every atom
    xyz = model.xyz.copy()
    for label, turn in (("A/LEU 43", 8.0), ("A/PHE 45", 25.0), ("A/GLU 18", -45.0),
                        ("A/ILE 30", 70.0), ("A/TYR 59", -150.0)):
        row = _row(chis, model, label)
        n = int(chis.n_chi[row])
        xyz = _set_residue_chis(model, restraints, xyz, chis, row,
                                chis.chis[row, :n] + np.r_[turn, np.zeros(n - 1)])
    xyz += np.random.default_rng(5).normal(scale=0.05, size=xyz.shape)
    values, analytic = term.evaluate(xyz[np.newaxis], np.array([0]))
    numeric = numerical_gradient(lambda x: term.evaluate(x[np.newaxis], np.array([0]))[0][0], xyz)
    scale = np.max(np.abs(numeric))
    assert scale > 0 and values[0] > 0
    assert np.max(np.abs(analytic[0] - numeric)) <= RTOL * scale
    # batched evaluation is per problem
    both, grads = term.evaluate(np.stack([xyz, model.xyz]), np.array([0, 1]))
    assert both[0] == pytest.approx(values[0])
    np.testing.assert_allclose(grads[0], analytic[0])


def test_term_potential_values(ubiquitin):
    model, _ = ubiquitin
    term = rotamer_term.rotamer_restraints(model)
    assert term.sigma.min() >= rotamer_term.ROTAMER_SIGMA
    # E = (b/σ)² (1 − exp(−Δ²/b²)) for one restraint, at a few residuals
    from varref.engine.torsions import torsion_values

    chis = side_chain_chis(model)
    row = _row(chis, model, "A/LEU 43")
    one = np.flatnonzero(np.all(term.atoms == chis.atoms[row, 0], axis=1))
    single = rotamer_term.RotamerTerm(model.n_atoms, term.atoms[one], term.ideal[one],
                                      term.sigma[one], term.width[one], term.period[one])
    sigma, width = float(term.sigma[one[0]]), float(term.width[one[0]])
    restraints = build_restraints(model)
    for turn in (0.0, 5.0, 30.0, 90.0):
        xyz = _set_residue_chis(model, restraints, model.xyz, chis, row,
                                [term.ideal[one[0]] + turn, chis.chis[row, 1]])
        delta = float(chi_deltas(torsion_values(xyz, term.atoms[one])[0], term.ideal[one[0]], 1))
        assert delta == pytest.approx(turn, abs=1e-9)
        value = single.evaluate(xyz[np.newaxis], np.array([0]))[0][0]
        plateau = (width / sigma) ** 2
        assert value == pytest.approx(plateau * (1.0 - math.exp(-(delta / width) ** 2)),
                                      rel=1e-9, abs=1e-12)
    # harmonic with sigma σ near the centre
    xyz = _set_residue_chis(model, restraints, model.xyz, chis, row,
                            [term.ideal[one[0]] + 0.5, chis.chis[row, 1]])
    assert single.evaluate(xyz[np.newaxis], np.array([0]))[0][0] == pytest.approx(
        (0.5 / sigma) ** 2, rel=1e-3)


def test_term_build_switch_uses_the_input_model_only(ubiquitin):
    model, restraints = ubiquitin
    assert rotamer_term.build(_setup(model, restraints, rotamer=False)) is None
    term = rotamer_term.build(_setup(model, restraints))
    assert term is not None and term.name == "rotamer" and term.kind == "restraint"
    chis = side_chain_chis(model)
    n_expected = int(sum(chis.n_chi[i] for i in np.flatnonzero(chis.in_basin)
                         if chis.resname[i] != "PRO"))
    assert len(term) == n_expected
    assert not any(" PRO " in label.replace("/PRO", " PRO ") for label in term.labels)
    # a batch of starts in which a side chain left its rotamer: same restraints
    row = _row(chis, model, "A/LEU 43")
    moved = _set_residue_chis(model, restraints, model.xyz, chis, row, [0.0, 120.0])
    other = rotamer_term.build(_setup(model, restraints, start=np.stack([moved, model.xyz])))
    np.testing.assert_array_equal(other.atoms, term.atoms)
    np.testing.assert_array_equal(other.ideal, term.ideal)
    # ... whereas an input model with that side chain an outlier has none for it
    outlier_model = model.with_xyz(moved)
    assert len(rotamer_term.build(_setup(outlier_model, restraints))) == len(term) - 2
    # with a map, the pipeline fits the input model's outliers first and the term restrains
    # them in their new rotamer
    from varref.refinement.options import RefineOptions
    from varref.refinement.pipeline import _fit_rotamers

    density = simulate_map(model, 3.0).normalised()
    fitted_model, fitted_xyz = _fit_rotamers(outlier_model, outlier_model.xyz[np.newaxis], density,
                                             restraints, RefineOptions(resolution=3.0))
    np.testing.assert_array_equal(fitted_xyz[0], fitted_model.xyz)
    fitted = rotamer_term.build(_setup(fitted_model, restraints, density=density))
    np.testing.assert_array_equal(fitted.atoms, term.atoms)
    assert "A/LEU 43 mt chi1" in fitted.labels.tolist()
    wider = rotamer_term.build(_setup(model, restraints, rotamer_sigma=20.0))
    assert wider.sigma.min() == 20.0
    with pytest.raises(ValueError):
        rotamer_term.rotamer_restraints(model, min_sigma=0.0)


def test_term_subset(ubiquitin):
    model, _ = ubiquitin
    term = rotamer_term.rotamer_restraints(model)
    atoms = np.flatnonzero(np.isin(model.residue_index, [41, 42, 43]))
    part = term.subset(atoms)
    inside = np.all(np.isin(term.atoms, atoms), axis=1)
    assert len(part) == inside.sum() > 0
    full_inside = rotamer_term.RotamerTerm(model.n_atoms, term.atoms[inside], term.ideal[inside],
                                           term.sigma[inside], term.width[inside],
                                           term.period[inside], flat=term.flat[inside])
    expected = full_inside.evaluate(model.xyz[np.newaxis], np.array([0]))[0]
    got = part.evaluate(model.xyz[atoms][np.newaxis], np.array([0]))[0]
    assert got == pytest.approx(expected)
    assert term.subset(np.array([0, 1])) is None


def test_side_chain_turned_40_degrees_returns_to_its_rotamer(ubiquitin):
    """Geometry + rotamer term pull chi1 back from 40° off the rotamer centre. The monomer
    library's own staggered chi restraints are removed from the geometry so that the pull
    is this term's alone (with them, geometry alone also restores most chi1)."""
    model, restraints = ubiquitin
    term = rotamer_term.rotamer_restraints(model)
    library = load_rotamer_library()
    chis = side_chain_chis(model)
    chi_bonds = {tuple(sorted(q[1:3])) for q in term.atoms.tolist()}
    t = restraints.torsions
    keep = np.array([tuple(sorted(a[1:3])) not in chi_bonds for a in t.atoms.tolist()])
    no_chi = replace(restraints, torsions=TorsionRestraints(t.atoms[keep], t.ideal[keep],
                                                            t.sigma[keep], t.period[keep]))
    labels = ["A/LEU 43", "A/PHE 45", "A/LYS 33", "A/GLU 18", "A/ILE 30", "A/TYR 59",
              "A/ASN 25", "A/MET 1"]
    rows = [_row(chis, model, label) for label in labels]
    start = model.xyz.copy()
    centres, flats = [], []
    for i, row in enumerate(rows):
        rotamers = library.get(str(chis.resname[row]))
        centre = rotamers.chi[chis.rotamer[row]]
        centres.append(centre)
        flats.append(rotamer_term.FLAT_ESDS * rotamers.sigma[chis.rotamer[row], 0])
        turn = np.zeros(len(centre))
        turn[0] = 40.0 if i % 2 else -40.0
        start = _set_residue_chis(model, restraints, start, chis, row, centre + turn)

    def chi1_errors(terms):
        objective = Objective(terms, [0.0], start[None])
        result = minimise_lbfgs(objective, objective.pack(start[None]), max_iterations=500)
        after = side_chain_chis(model, objective.unpack(result.x, np.arange(1))[0])
        return np.array([float(chi_deltas(after.chis[row, 0], centre[0], 1))
                         for row, centre in zip(rows, centres)])

    with_term = chi1_errors([GeometryTerm(no_chi), term])
    without = chi1_errors([GeometryTerm(no_chi)])
    print("chi1 off the rotamer centre after minimisation (start ±40°):",
          np.round(with_term, 1), "with the term;", np.round(without, 1), "without")
    # back to the edge of the flat bottom (one esd of the rotamer's chi1), not beyond it
    assert np.all(np.abs(with_term) < np.array(flats) + 3.0)
    assert np.sqrt(np.mean(with_term**2)) < np.sqrt(np.mean(without**2)) / 2
    # the control: without the term the side chains stay well away (so the test can fail)
    assert np.sqrt(np.mean(without**2)) > 10.0


# --------------------------------------------------------------------------- rotamer fit


#: Side chains set to outlier conformations (chis, degrees) in the fit tests.
OUTLIER_CHIS = {"A/LEU 43": [0.0, 120.0], "A/PHE 45": [120.0, 0.0],
                "A/LYS 33": [0.0, 0.0, 120.0, 0.0], "A/GLU 18": [120.0, 0.0, 45.0],
                "A/ILE 30": [0.0, 0.0]}


def _with_outliers(model, restraints, labels):
    chis = side_chain_chis(model)
    xyz = model.xyz.copy()
    for label in labels:
        xyz = _set_residue_chis(model, restraints, xyz, chis, _row(chis, model, label),
                                OUTLIER_CHIS[label])
    return xyz, chis


def test_rotamer_fit_restores_outliers_into_the_true_rotamer(ubiquitin, ubiquitin_map,
                                                              rotamer_tables):
    model, restraints = ubiquitin
    start, truth = _with_outliers(model, restraints, OUTLIER_CHIS)
    flagged, _ = rotamer_outliers(model, start, rotamer_tables)
    residues = [model.residue_labels().index(label) for label in OUTLIER_CHIS]
    assert set(residues) <= set(flagged.tolist())
    for tables in (rotamer_tables, None):
        fitted, report = fit_rotamer_outliers(model, start, ubiquitin_map, restraints,
                                              tables=tables)
        assert sorted(report.changed) == sorted(OUTLIER_CHIS)
        assert sorted(report.changed_residues.tolist()) == sorted(residues)
        after = side_chain_chis(model, fitted)
        for label in OUTLIER_CHIS:
            row = _row(truth, model, label)
            n = int(truth.n_chi[row])
            error = chi_deltas(after.chis[row, :n], truth.chis[row, :n], truth.period[row, :n])
            assert np.all(np.abs(error) < 30.0), (label, error)
            assert after.rotamer_name[row] == truth.rotamer_name[row]
        # nothing else moved, and the input is not modified
        others = ~np.isin(model.residue_index, residues)
        np.testing.assert_array_equal(fitted[others], start[others])
    assert report.rule == "library basins"
    # deterministic
    again, report_again = fit_rotamer_outliers(model, start, ubiquitin_map, restraints)
    np.testing.assert_array_equal(again, fitted)
    assert report_again.residues == report.residues


def test_rotamer_fit_leaves_the_true_model_and_absent_density_alone(ubiquitin, rotamer_tables):
    model, restraints = ubiquitin
    density = simulate_map(model, 3.0).normalised()
    # the deposited side chains (a few are grid outliers) fit their own map best
    same, report = fit_rotamer_outliers(model, model.xyz, density, restraints,
                                        tables=rotamer_tables)
    assert len(report.residues) >= 5 and report.changed == []
    np.testing.assert_array_equal(same, model.xyz)
    # Leu 43's side chain has no density: its outlier conformation is left alone, while
    # Phe 45, fitted in the same call, is restored
    residue = model.residue_labels().index("A/LEU 43")
    side_chain = (model.residue_index == residue) & ~np.isin(model.atom_name,
                                                             ["N", "CA", "C", "O", "CB"])
    occupancy = model.occupancy.copy()
    occupancy[side_chain] = 0.0
    hollow = simulate_map(replace(model, occupancy=occupancy), 3.0).normalised()
    start, _ = _with_outliers(model, restraints, ["A/LEU 43", "A/PHE 45"])
    fitted, report = fit_rotamer_outliers(model, start, hollow, restraints, tables=rotamer_tables)
    entry = next(row for row in report.residues if row["label"] == "A/LEU 43")
    assert entry["status"] != CHANGED
    assert report.changed == ["A/PHE 45"]
    np.testing.assert_array_equal(fitted[model.residue_index == residue],
                                  start[model.residue_index == residue])


def test_rotamer_fit_moves_hydrogens_and_skips_disulfides(rotamer_tables):
    from varref.validation.clashes import add_riding_hydrogens

    crambin = add_riding_hydrogens(read_model(shared_file("models/1crn.pdb")))
    restraints = build_restraints(crambin)
    density = simulate_map(crambin, 3.0).normalised()
    chis = side_chain_chis(crambin)
    xyz = _set_residue_chis(crambin, restraints, crambin.xyz, chis, _row(chis, crambin, "A/ILE 7"),
                            [0.0, 0.0])
    # Cys 3's chi1 to 0 by turning SG alone (its far side, through the disulfide, is the
    # rest of the protein)
    cys = _row(chis, crambin, "A/CYS 3")
    sg = np.flatnonzero((crambin.residue_index == chis.residue[cys]) & (crambin.atom_name == "SG"))
    xyz = set_chis(xyz, chis.atoms[cys, :1], [sg], np.array([0.0]), np.array([1]))
    assert rotamer_outliers(crambin, xyz, rotamer_tables)[0].tolist() == sorted(
        [int(chis.residue[cys]), crambin.residue_labels().index("A/ILE 7")])
    fitted, report = fit_rotamer_outliers(crambin, xyz, density, restraints, tables=rotamer_tables)
    status = {row["label"]: row["status"] for row in report.residues}
    assert status["A/CYS 3"] == SKIPPED_BONDED  # SG is bonded to Cys 40's SG
    assert status["A/ILE 7"] == CHANGED
    # every bond, to hydrogens too, keeps its length: hydrogens rode along
    bonds = restraints.bonds.atoms
    np.testing.assert_allclose(np.linalg.norm(fitted[bonds[:, 0]] - fitted[bonds[:, 1]], axis=1),
                               np.linalg.norm(xyz[bonds[:, 0]] - xyz[bonds[:, 1]], axis=1),
                               atol=1e-9)
    residue = crambin.residue_labels().index("A/ILE 7")
    hydrogens = (crambin.residue_index == residue) & crambin.is_hydrogen
    assert np.any(np.abs(fitted[hydrogens] - xyz[hydrogens]) > 0.5)
