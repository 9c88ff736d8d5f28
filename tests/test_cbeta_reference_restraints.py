"""C-beta restraints and reference-model torsion restraints (top-out): which atoms, ideal
values, gradients of the terms, and what minimisation with them does on deposited models."""

from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from tests.conftest import shared_file
from tests.engine.gradient_check import numerical_gradient
from varref.engine.restraint_target import pack_restraints, restraint_values_and_gradients_batch
from varref.engine.topout_torsions import topout_torsion_deltas
from varref.engine.torsions import torsion_deltas, torsion_values
from varref.errors import InputError
from varref.model import Model, read_model
from varref.refinement.lbfgs import minimise_lbfgs
from varref.refinement.terms import cbeta as cbeta_term
from varref.refinement.terms import reference as reference_term
from varref.refinement.terms.base import Term, TermSetup
from varref.restraints import TorsionRestraints, build_restraints
from varref.restraints.cbeta import (
    CBETA_IDEAL_DEFAULT,
    CBETA_IDEAL_TORSIONS,
    CBETA_SIGMA,
    cbeta_ideal_torsions,
    cbeta_restraints,
)
from varref.restraints.reference import proper_torsions, reference_torsions
from varref.validation.cbeta import (
    CBETA_OUTLIER,
    IDEAL_CBETA_DEFAULT,
    IDEAL_CBETA_GEOMETRY,
    cbeta_deviations,
)
from varref.validation.residues import ResidueTable

RTOL = 1e-4


# --------------------------------------------------------------------------- helpers


def _load(shared, name):
    model = read_model(shared(f"models/{name}"))
    restraints = build_restraints(model)
    return model, restraints, pack_restraints(restraints)


@pytest.fixture(scope="module")
def crambin():
    return _load(shared_file, "1crn.pdb")


@pytest.fixture(scope="module")
def ubiquitin():
    return _load(shared_file, "1ubq.pdb")


def _setup(model, restraints, packed, **options):
    return TermSetup(model=model, restraints=restraints, packed=packed, density=None,
                     options=SimpleNamespace(**options), start=model.xyz[np.newaxis].copy())




def _check_term_gradient(term, xyz):
    _, analytic = term.evaluate(xyz[np.newaxis], np.array([0]))
    numeric = numerical_gradient(lambda x: term.evaluate(x[np.newaxis], np.array([0]))[0][0], xyz)
    scale = np.max(np.abs(numeric))
    assert scale > 0
    assert np.max(np.abs(analytic[0] - numeric)) <= RTOL * scale


def _minimise(packed, start, terms=(), moving=None, iterations=300, repulsion=False):
    """L-BFGS of geometry (+ optional repulsion) + ``terms`` from ``start`` (N, 3); atoms
    outside ``moving`` stay fixed."""
    moving = np.arange(len(start)) if moving is None else np.asarray(moving)
    neighbours = packed.batch_neighbour_list() if repulsion else None

    def objective(x, members):
        xyz = np.repeat(start[np.newaxis], len(members), axis=0)
        xyz[:, moving] = x.reshape(len(members), -1, 3)
        pairs = neighbours.update(xyz) if neighbours is not None else None
        values, grad = restraint_values_and_gradients_batch(xyz, packed, pairs)
        for term in terms:
            v, g = term.evaluate(xyz, members)
            values, grad = values + v, grad + g
        return values, np.ascontiguousarray(grad[:, moving].reshape(len(members), -1))

    result = minimise_lbfgs(objective, start[moving].reshape(1, -1), max_iterations=iterations)
    out = start.copy()
    out[moving] = result.x.reshape(-1, 3)
    return out


def _residue_atoms(model, residue):
    atoms = np.flatnonzero(model.residue_index == residue)
    return atoms, dict(zip(model.atom_name[atoms].tolist(), atoms.tolist()))


def _cbeta_deviation(model, xyz, residue):
    rows = cbeta_deviations(ResidueTable(model.with_xyz(xyz)))["residues"]
    return next(row["deviation"] for row in rows if row["residue"] == residue)


def _rotate_side_chain(model, xyz, residue, angle_deg):
    """Rotate the atoms beyond CB about the CA→CB axis (changes chi1 by angle_deg)."""
    atoms, names = _residue_atoms(model, residue)
    beyond = atoms[~np.isin(model.atom_name[atoms], ["N", "CA", "C", "O", "CB", "OXT"])]
    axis = xyz[names["CB"]] - xyz[names["CA"]]
    axis /= np.linalg.norm(axis)
    t = math.radians(angle_deg)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + math.sin(t) * k + (1 - math.cos(t)) * k @ k
    out = xyz.copy()
    out[beyond] = (xyz[beyond] - xyz[names["CB"]]) @ rotation.T + xyz[names["CB"]]
    return out


def _chi1(model, residue):
    _, names = _residue_atoms(model, residue)
    gamma = next(n for n in ("CG", "CG1", "OG", "OG1", "SG") if n in names)
    return np.array([[names["N"], names["CA"], names["CB"], names[gamma]]], dtype=np.int64)


def _wrap(a):
    return (np.asarray(a) + 180.0) % 360.0 - 180.0


def _select_atoms(model: Model, keep: np.ndarray) -> Model:
    """A Model of the atoms ``keep`` in the given order (arrays only; matching ignores the
    gemmi template)."""
    per_atom = {name: getattr(model, name)[keep] for name in (
        "xyz", "element", "atomic_number", "atom_name", "residue_name", "chain_id",
        "residue_number", "insertion_code", "altloc", "residue_index", "b_iso", "occupancy",
        "is_hydrogen", "is_water")}
    return replace(model, **per_atom)


# --------------------------------------------------------------------------- C-beta


def test_cbeta_ideal_values_are_molprobity_and_mirrored_for_d_amino_acids():
    # the restraint table and the validation table must describe the same ideal CB
    for name, (ncab, cnab) in CBETA_IDEAL_TORSIONS.items():
        geometry = IDEAL_CBETA_GEOMETRY[name]
        assert (ncab, cnab) == (geometry[2], geometry[4])
    assert CBETA_IDEAL_DEFAULT == (IDEAL_CBETA_DEFAULT[2], IDEAL_CBETA_DEFAULT[4])
    assert cbeta_ideal_torsions("LEU") == CBETA_IDEAL_DEFAULT
    assert cbeta_ideal_torsions("DAL") == (-122.9, 122.6)
    assert cbeta_ideal_torsions("DLE") == (-CBETA_IDEAL_DEFAULT[0], -CBETA_IDEAL_DEFAULT[1])
    assert cbeta_ideal_torsions("HYP") == CBETA_IDEAL_TORSIONS["PRO"]  # parent by 1-letter code
    assert cbeta_ideal_torsions("HOH") is None
    assert cbeta_ideal_torsions("DA") is None
    assert CBETA_SIGMA == 2.5


def test_cbeta_restraints_cover_every_residue_with_a_cbeta(crambin):
    model, _, _ = crambin
    restraints = cbeta_restraints(model)
    table = ResidueTable(model)
    with_cb = np.flatnonzero(table.is_amino_acid & (table.atoms("CB") >= 0))
    assert np.array_equal(np.unique(restraints.residue), with_cb)
    assert len(restraints.atoms) == 2 * len(with_cb)
    names = model.atom_name[restraints.atoms]
    assert np.all(names[0::2] == ["N", "C", "CA", "CB"])
    assert np.all(names[1::2] == ["C", "N", "CA", "CB"])
    assert np.all(model.residue_index[restraints.atoms] == restraints.residue[:, None])
    assert len(restraints.skipped) == 0


@pytest.mark.parametrize("name", ["1crn.pdb", "1ubq.pdb"])
def test_cbeta_residuals_small_on_deposited_models(shared, name):
    model = read_model(shared(f"models/{name}"))
    restraints = cbeta_restraints(model)
    delta = torsion_deltas(model.xyz, restraints.atoms, restraints.ideal,
                           np.ones(len(restraints.ideal), np.int64)).reshape(-1, 2)
    rms_deg = float(np.sqrt(np.mean(delta**2)))
    # displacement of CB implied by the torsion residuals: |CA-CB| sin(CB-CA-axis) · Δ
    cb, ca = restraints.atoms[0::2, 3], restraints.atoms[0::2, 2]
    arm = np.linalg.norm(model.xyz[cb] - model.xyz[ca], axis=1) * math.sin(math.radians(110.0))
    implied = arm * np.radians(np.sqrt(np.mean(delta**2, axis=1)))
    rows = {r["residue"]: r["deviation"] for r in cbeta_deviations(ResidueTable(model))["residues"]}
    deviation = np.array([rows[r] for r in restraints.residue[0::2]])
    rms_implied = float(np.sqrt(np.mean(implied**2)))
    rms_deviation = float(np.sqrt(np.mean(deviation**2)))
    print(f"{name}: C-beta torsion residual r.m.s. {rms_deg:.2f} deg "
          f"(max {np.abs(delta).max():.1f}), implied CB shift r.m.s. {rms_implied:.3f} A, "
          f"MolProbity C-beta deviation r.m.s. {rms_deviation:.3f} A")
    # the torsions see (part of) what the validation measures: never more than it ...
    assert rms_implied <= rms_deviation
    # ... and the same residues stand out
    assert np.corrcoef(implied, deviation)[0, 1] > 0.8
    # and the r.m.s. residual is well inside the torsion error that makes a 0.25 Å outlier
    assert rms_deg < 0.5 * math.degrees(CBETA_OUTLIER / float(np.mean(arm)))


def test_cbeta_term_gradient_matches_finite_differences(crambin):
    model, restraints, packed = crambin
    term = cbeta_term.build(_setup(model, restraints, packed))
    xyz = model.xyz + np.random.default_rng(1).normal(scale=0.1, size=model.xyz.shape)
    _check_term_gradient(term, xyz)


def test_cbeta_build_switch_and_subset(crambin):
    model, restraints, packed = crambin
    assert cbeta_term.build(_setup(model, restraints, packed, cbeta=False)) is None
    term = cbeta_term.build(_setup(model, restraints, packed))
    assert isinstance(term, Term)
    assert term.name == "cbeta" and term.kind == "restraint"
    assert len(term) == len(cbeta_restraints(model).atoms)
    xyz = model.xyz + np.random.default_rng(2).normal(scale=0.2, size=model.xyz.shape)
    atoms = np.flatnonzero(np.isin(model.residue_index, [3, 4, 5]))
    part = term.subset(atoms)
    assert len(part) == 6  # CYS 4, PRO 5, SER 6 of crambin, each with a CB
    inside = np.all(np.isin(term.atoms, atoms), axis=1)
    expected = np.sum(torsion_deltas(xyz, term.atoms[inside], term.ideal[inside],
                                     np.ones(inside.sum(), np.int64))**2) / CBETA_SIGMA**2
    value, grad = part.evaluate(xyz[atoms][np.newaxis], np.array([0]))
    assert value[0] == pytest.approx(expected, rel=1e-12)
    assert grad.shape == (1, len(atoms), 3)
    glycine = np.flatnonzero(model.residue_index == 30)  # GLY 31: no CB
    assert model.residue_name[glycine[0]] == "GLY"
    assert term.subset(glycine) is None


def test_cbeta_mirror_image_and_wrong_handedness(crambin):
    model, _, _ = crambin
    # the mirror image of crambin with its alanines renamed DAL: the D residues are restrained
    # with the mirrored values (same residuals, opposite sign), the L residues are skipped
    mirrored_xyz = model.xyz * np.array([-1.0, 1.0, 1.0])
    names = np.where(model.residue_name == "ALA", "DAL", model.residue_name)
    mirror = replace(model, xyz=mirrored_xyz, residue_name=names)
    original = cbeta_restraints(model)
    restraints = cbeta_restraints(mirror)
    alanines = np.unique(model.residue_index[model.residue_name == "ALA"])
    assert np.array_equal(np.unique(restraints.residue), alanines)
    assert set(restraints.skipped) == set(np.unique(original.residue)) - set(alanines)
    ones = np.ones(len(restraints.ideal), np.int64)
    rows = np.isin(original.residue, alanines)
    np.testing.assert_allclose(
        torsion_deltas(mirror.xyz, restraints.atoms, restraints.ideal, ones),
        -torsion_deltas(model.xyz, original.atoms[rows], original.ideal[rows], ones), atol=1e-9)


def test_displaced_cbeta_is_pulled_back(crambin):
    model, restraints, packed = crambin
    term = cbeta_term.build(_setup(model, restraints, packed))
    rng = np.random.default_rng(4)
    for residue in (8, 23, 32, 39):  # ALA 9, ALA 24, ILE 33, CYS 40
        atoms, names = _residue_atoms(model, residue)
        along = model.xyz[names["CB"]] - model.xyz[names["CA"]]
        sideways = np.cross(along, rng.normal(size=3))
        xyz = model.xyz.copy()
        xyz[names["CB"]] += 0.5 * sideways / np.linalg.norm(sideways)
        start = _cbeta_deviation(model, xyz, residue)
        assert start > 2 * CBETA_OUTLIER - 0.1
        with_cbeta = _minimise(packed, xyz, [term], moving=atoms)
        geometry_only = _minimise(packed, xyz, [], moving=atoms)
        end = _cbeta_deviation(model, with_cbeta, residue)
        end_geometry = _cbeta_deviation(model, geometry_only, residue)
        print(f"{model.residue_labels()[residue]}: C-beta deviation {start:.3f} A displaced, "
              f"{end:.3f} A after geometry + C-beta, {end_geometry:.3f} A after geometry alone")
        assert end < min(CBETA_OUTLIER, start / 4)
        assert end <= end_geometry + 1e-3  # the term adds to what bond angles already do


def test_cbeta_term_alone_restores_its_torsions(crambin):
    model, restraints, packed = crambin
    term = cbeta_term.build(_setup(model, restraints, packed))
    atoms, names = _residue_atoms(model, 23)
    xyz = model.xyz.copy()
    xyz[names["CB"]] += np.array([0.3, -0.3, 0.2])
    rows = np.all(np.isin(term.atoms, atoms), axis=1)
    before = torsion_deltas(xyz, term.atoms[rows], term.ideal[rows], term.period[rows])
    assert np.max(np.abs(before)) > 10.0

    def objective(x, members):
        full = np.repeat(xyz[np.newaxis], len(members), axis=0)
        full[:, names["CB"]] = x
        values, grad = term.evaluate(full, members)
        return values, np.ascontiguousarray(grad[:, names["CB"]])

    result = minimise_lbfgs(objective, xyz[names["CB"]][np.newaxis], max_iterations=200,
                            gradient_tolerance=1e-10)
    xyz[names["CB"]] = result.x[0]
    after = torsion_deltas(xyz, term.atoms[rows], term.ideal[rows], term.period[rows])
    assert np.max(np.abs(after)) < 0.05


# --------------------------------------------------------------------------- reference


def test_proper_torsions_and_self_reference(ubiquitin):
    model, restraints, _ = ubiquitin
    torsions = reference_torsions(model, model, restraints)
    assert torsions.n_unmatched == 0
    assert len(torsions.atoms) == torsions.n_candidates == len(proper_torsions(model, restraints))
    np.testing.assert_allclose(topout_torsion_deltas(model.xyz, torsions.atoms, torsions.ideal,
                                                     torsions.period), 0.0, atol=1e-9)
    np.testing.assert_allclose(torsions.ideal, torsion_values(model.xyz, torsions.atoms),
                               atol=1e-9)
    # each torsion once, whichever direction it is written in
    canonical = {tuple(min(tuple(r), tuple(r[::-1]))) for r in torsions.atoms.tolist()}
    assert len(canonical) == len(torsions.atoms)
    # phi, psi and omega of every peptide: 75 links in 76 residues
    names = model.atom_name[torsions.atoms]
    omega = np.all(names == ["CA", "C", "N", "CA"], axis=1)
    phi = np.all(names == ["C", "N", "CA", "C"], axis=1)
    psi = np.all(names == ["N", "CA", "C", "N"], axis=1)
    assert (omega.sum(), phi.sum(), psi.sum()) == (75, 75, 75)
    # side chains: chi1 of every residue that has one
    chi1 = np.all(names[:, :3] == ["N", "CA", "CB"], axis=1)
    assert chi1.sum() == len(np.unique(model.residue_index[
        (model.atom_name == "CB") & ~np.isin(model.residue_name, ["ALA"])]))


def test_backbone_torsions_added_when_the_library_has_none(ubiquitin):
    model, restraints, _ = ubiquitin
    bare = replace(restraints, torsions=TorsionRestraints())
    rows = proper_torsions(model, bare)
    assert len(rows) == 3 * 75
    names = model.atom_name[rows]
    assert np.all(np.isin(names, ["N", "CA", "C"]))
    # the same phi/psi/omega the library defines (compared without direction)
    library = {tuple(min(tuple(r), tuple(r[::-1]))) for r in restraints.torsions.atoms.tolist()}
    assert all(tuple(min(tuple(r), tuple(r[::-1]))) in library for r in rows.tolist())


def test_hydrogen_torsions_are_not_restrained(ubiquitin):
    model, restraints, _ = ubiquitin
    flagged = replace(model, is_hydrogen=model.atom_name == "CG")  # pretend CG were hydrogens
    rows = proper_torsions(flagged, restraints)
    assert not np.any(model.atom_name[rows] == "CG")
    assert len(rows) < len(proper_torsions(model, restraints))


def test_matching_by_chain_number_icode_and_name(ubiquitin):
    model, restraints, _ = ubiquitin
    rng = np.random.default_rng(8)
    # reference: residues 10-15 missing, atoms shuffled, a side chain in another rotamer,
    # and residue 30 with an insertion code
    missing = np.isin(model.residue_number, np.arange(10, 16))
    keep = rng.permutation(np.flatnonzero(~missing))
    reference = _select_atoms(model, keep)
    moved_residue = 43  # LEU 43
    rotated = _rotate_side_chain(model, model.xyz, moved_residue - 1, 100.0)
    reference = replace(reference, xyz=rotated[keep],
                        insertion_code=np.where(model.residue_number[keep] == 30, "A",
                                                model.insertion_code[keep]))
    torsions = reference_torsions(model, reference, restraints)
    all_rows = proper_torsions(model, restraints)
    unmatched = np.isin(model.residue_number[all_rows], list(range(10, 16)) + [30]).any(axis=1)
    assert torsions.n_candidates == len(all_rows)
    assert torsions.n_unmatched == unmatched.sum() > 0
    assert {tuple(r) for r in torsions.atoms.tolist()} == \
        {tuple(r) for r in all_rows[~unmatched].tolist()}
    # values come from the reference coordinates: only LEU 43 differs from the model
    delta = topout_torsion_deltas(model.xyz, torsions.atoms, torsions.ideal, torsions.period)
    in_leu = np.isin(model.residue_number[torsions.atoms], [moved_residue]).any(axis=1)
    names = model.atom_name[torsions.atoms]
    moving_side_chain = in_leu & np.isin(names, ["CG", "CD1", "CD2"]).any(axis=1)
    assert np.all(np.abs(delta[~moving_side_chain]) < 1e-9)
    chi1 = moving_side_chain & np.all(names[:, :3] == ["N", "CA", "CB"], axis=1)
    assert delta[chi1] == pytest.approx([-100.0], abs=1e-6)


def test_reference_with_swapped_equivalent_atoms_restrains_equally(ubiquitin):
    model, restraints, _ = ubiquitin
    torsions = reference_torsions(model, model, restraints)
    names = model.atom_name[torsions.atoms]
    two = torsions.period == 2
    assert two.any()
    ends = np.where(np.isin(names[:, 3], ["OD1", "OD2", "OE1", "OE2", "CD1", "CD2", "NH1", "NH2"]),
                    names[:, 3], names[:, 0])
    assert set(ends[two]) <= {"OD1", "OD2", "OE1", "OE2", "CD1", "CD2", "NH1", "NH2"}
    assert set(model.residue_name[torsions.atoms[two, 1]]) <= {"ASP", "GLU", "PHE", "TYR", "ARG"}
    # a Leu's CD1/CD2 are not equivalent (their names follow chirality)
    leu = model.residue_name[torsions.atoms[:, 1]] == "LEU"
    assert np.all(torsions.period[leu] == 1)
    # reference with OD1/OD2, OE1/OE2 ... names swapped: every torsion restrained as before
    swap = {"OD1": "OD2", "OD2": "OD1", "OE1": "OE2", "OE2": "OE1", "NH1": "NH2", "NH2": "NH1"}
    aromatic = np.isin(model.residue_name, ["PHE", "TYR"])
    swap_aromatic = {"CD1": "CD2", "CD2": "CD1", "CE1": "CE2", "CE2": "CE1"}
    swapped_names = np.array([
        swap_aromatic.get(a, a) if aro else (swap.get(a, a) if r in ("ASP", "GLU", "ARG") else a)
        for a, r, aro in zip(model.atom_name, model.residue_name, aromatic)])
    flipped = reference_torsions(model, replace(model, atom_name=swapped_names), restraints)
    assert len(flipped.atoms) == len(torsions.atoms)
    delta = topout_torsion_deltas(model.xyz, flipped.atoms, flipped.ideal, flipped.period)
    delta_period_one = _wrap(torsion_values(model.xyz, flipped.atoms) - flipped.ideal)
    changed = np.abs(delta_period_one) > 1e-6
    assert changed.sum() >= two.sum() / 2
    # period 1 would see the swap as ~180° (the plateau: no restraint at all); period 2 sees
    # only the small difference between the two equivalent atoms' torsions
    assert np.all(np.abs(delta_period_one[changed]) > 160.0)
    assert np.all(np.abs(delta[changed]) < 10.0)


def test_reference_term_gradient_matches_finite_differences(ubiquitin):
    model, restraints, packed = ubiquitin
    term = reference_term.build(_setup(model, restraints, packed, reference_model="start"))
    xyz = model.xyz + np.random.default_rng(6).normal(scale=0.15, size=model.xyz.shape)
    delta = np.abs(topout_torsion_deltas(xyz, term.atoms, term.ideal, term.period))
    assert np.sum(delta < 5) > 20 and np.sum((delta > 8) & (delta < 20)) > 20  # near and mid
    _check_term_gradient(term, xyz)


def test_reference_build_options(ubiquitin, shared, tmp_path):
    model, restraints, packed = ubiquitin
    assert reference_term.build(_setup(model, restraints, packed)) is None
    assert reference_term.build(_setup(model, restraints, packed, reference_model=None)) is None
    start = reference_term.build(_setup(model, restraints, packed, reference_model="start"))
    assert isinstance(start, Term)
    assert start.name == "reference" and start.kind == "restraint"
    assert (start.sigma, start.limit) == (1.0, 15.0)  # Phenix defaults
    np.testing.assert_allclose(start.ideal, torsion_values(model.xyz, start.atoms), atol=1e-9)
    from_model = reference_term.build(_setup(model, restraints, packed, reference_model=model,
                                             reference_sigma=2.0, reference_limit=30.0))
    assert (from_model.sigma, from_model.limit) == (2.0, 30.0)
    assert np.array_equal(from_model.atoms, start.atoms)
    from_file = reference_term.build(_setup(model, restraints, packed,
                                            reference_model=str(shared("models/1ubq.pdb"))))
    np.testing.assert_allclose(from_file.ideal, start.ideal, atol=1e-9)
    other_chain = replace(model, chain_id=np.full(model.n_atoms, "Z"))
    with pytest.raises(InputError, match="no torsion"):
        reference_term.build(_setup(model, restraints, packed, reference_model=other_chain))
    with pytest.raises(InputError):
        reference_term.build(_setup(model, restraints, packed,
                                    reference_model=str(tmp_path / "absent.pdb")))
    with pytest.raises(ValueError, match="sigma"):
        reference_term.ReferenceTerm(model.n_atoms, start.atoms, start.ideal, start.period, 0.0)


def test_reference_subset(ubiquitin):
    model, restraints, packed = ubiquitin
    term = reference_term.build(_setup(model, restraints, packed, reference_model="start"))
    atoms = np.flatnonzero(np.isin(model.residue_index, [20, 21, 22]))
    part = term.subset(atoms)
    inside = np.all(np.isin(term.atoms, atoms), axis=1)
    assert len(part) == inside.sum() > 0
    assert np.all(part.period == term.period[inside])
    xyz = model.xyz + np.random.default_rng(9).normal(scale=0.3, size=model.xyz.shape)
    full_inside = reference_term.ReferenceTerm(model.n_atoms, term.atoms[inside],
                                               term.ideal[inside], term.period[inside])
    expected = full_inside.evaluate(xyz[np.newaxis], np.array([0]))[0]
    assert part.evaluate(xyz[atoms][np.newaxis], np.array([0]))[0] == pytest.approx(expected)
    assert term.subset(np.array([0, 1])) is None


def test_reference_restores_small_changes_and_lets_large_ones_go(ubiquitin):
    model, restraints, packed = ubiquitin
    truth = model.xyz
    term = reference_term.build(_setup(model, restraints, packed, reference_model=model))
    # chi1 of eight side chains off by ±10° (inside the top-out range σ·l = 15°), and one
    # side chain moved to another rotamer (+120°), as a map might demand
    small = {0: -10.0, 1: 10.0, 2: -10.0, 3: 10.0, 5: -10.0, 7: 10.0, 10: -10.0, 14: 10.0}
    large = 17  # GLU 18
    start = truth.copy()
    for residue, angle in {**small, large: 120.0}.items():
        start = _rotate_side_chain(model, start, residue, angle)

    def chi1_error(xyz, residue):
        rows = _chi1(model, residue)
        return float(_wrap(torsion_values(xyz, rows) - torsion_values(truth, rows))[0])

    # control for the large change: the same reference restraints except that side chain's chi1
    large_chi1 = np.all(np.isin(term.atoms, _chi1(model, large)[0]), axis=1)
    assert large_chi1.sum() == 1
    control = reference_term.ReferenceTerm(model.n_atoms, term.atoms[~large_chi1],
                                           term.ideal[~large_chi1], term.period[~large_chi1])
    with_reference = _minimise(packed, start, [term], iterations=500, repulsion=True)
    without = _minimise(packed, start, [], iterations=500, repulsion=True)
    released = _minimise(packed, start, [control], iterations=500, repulsion=True)
    errors = np.array([chi1_error(with_reference, r) for r in small])
    errors_without = np.array([chi1_error(without, r) for r in small])
    rms, rms_without = np.sqrt(np.mean(errors**2)), np.sqrt(np.mean(errors_without**2))
    moved_with, moved_released = chi1_error(with_reference, large), chi1_error(released, large)
    print(f"chi1 error r.m.s. after minimisation: {rms:.2f} deg with the reference, "
          f"{rms_without:.2f} deg without (start 10 deg); the 120 deg change ends at "
          f"{moved_with:.2f} deg, {moved_released:.2f} deg without its own restraint")
    assert rms < 3.0 and np.max(np.abs(errors)) < 7.0
    assert rms < rms_without / 3
    # the large change is not resisted: its restraint, on the plateau, hardly moves it
    assert abs(moved_with) > 90.0
    assert abs(_wrap(moved_with - moved_released)) < 1.0
    # whereas the same restraints without top-out (a limit far beyond any residual) drag it back
    harmonic = reference_term.ReferenceTerm(model.n_atoms, term.atoms, term.ideal, term.period,
                                            sigma=1.0, limit=1e4)
    dragged = chi1_error(_minimise(packed, start, [harmonic], iterations=500, repulsion=True),
                         large)
    print(f"harmonic reference restraints: the 120 deg change ends at {dragged:.2f} deg")
    assert abs(dragged) < abs(moved_with) / 2
    # while the energy of that residue's restraints is on the plateau
    rows = np.all(np.isin(term.atoms, _residue_atoms(model, large)[0]), axis=1)
    chi = rows & np.all(model.atom_name[term.atoms[:, :3]] == ["N", "CA", "CB"], axis=1)
    delta = topout_torsion_deltas(with_reference, term.atoms[chi], term.ideal[chi],
                                  term.period[chi])
    assert np.all(np.abs(delta) > 90.0)
