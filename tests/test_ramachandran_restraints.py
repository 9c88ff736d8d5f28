"""Ramachandran restraints: the shipped potential against the Top8000 grids, residue finding
and classes on real models, the refinement term, and minimisation out of outliers."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from types import SimpleNamespace

import gemmi
import numpy as np
import pytest

from varref.engine.ramachandran import phi_psi, potential_at, residue_potentials
from varref.model import Model, read_model
from varref.refinement.lbfgs import minimise_lbfgs
from varref.refinement.objective import Objective
from varref.refinement.terms import ramachandran as rama_term
from varref.refinement.terms.base import TermSetup
from varref.refinement.terms.geometry import GeometryTerm
from varref.restraints.ramachandran import (
    POTENTIAL_FILE,
    find_ramachandran_residues,
    load_ramachandran_potential,
)
from varref.validation.ramachandran import (
    CIS_OMEGA_LIMIT,
    RAMA_CLASSES,
    classify,
    load_ramachandran_tables,
    ramachandran_analysis,
)
from varref.validation.residues import ResidueTable, dihedral_deg
from varref.validation.tables import FAVOURED, OUTLIER

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TOP8000 = SHARED / "validation" / "top8000"
MODELS = SHARED / "models"
POTENTIAL = load_ramachandran_potential()

needs_top8000 = pytest.mark.skipif(not (TOP8000 / "Top8000_ramachandran_pct_contour_grids").is_dir(),
                                   reason="../shared Top8000 grids not available")
needs_models = pytest.mark.skipif(not MODELS.is_dir(), reason="../shared models not available")


@pytest.fixture(scope="module")
def top8000():
    return load_ramachandran_tables(TOP8000)


def model(name: str):
    return read_model(MODELS / name)


def classes_of(residues) -> np.ndarray:
    return POTENTIAL.class_index(residues.class_name)


def potentials(xyz, residues) -> np.ndarray:
    return residue_potentials(xyz, residues.atoms, classes_of(residues), POTENTIAL.table,
                              POTENTIAL.origin, POTENTIAL.spacing)


def status_by_residue(m, xyz, top8000) -> dict[int, str]:
    analysis = ramachandran_analysis(ResidueTable(m.with_xyz(xyz)), top8000)
    return {row["residue"]: row["status"] for row in analysis["residues"]}


# --------------------------------------------------------------------------- the table


def test_shipped_table_is_small_periodic_and_non_negative():
    shipped = resources.files("varref.data")
    assert len(shipped.joinpath(POTENTIAL_FILE).read_bytes()) < 500_000
    assert "CC BY 4.0" in shipped.joinpath("TOP8000_LICENSE.md").read_text(encoding="utf-8")
    assert POTENTIAL.table.shape == (len(RAMA_CLASSES), 180, 180)
    assert set(POTENTIAL.classes) == set(RAMA_CLASSES)
    assert POTENTIAL.table.shape[1] * POTENTIAL.spacing == pytest.approx(360.0)
    assert np.all(np.isfinite(POTENTIAL.table)) and np.all(POTENTIAL.table >= 0.0)
    for c in range(len(RAMA_CLASSES)):  # every class has a flat favoured region and a rise
        assert 0.0 < np.mean(POTENTIAL.table[c] == 0.0) < 0.5


@needs_top8000
def test_table_is_zero_exactly_where_validation_says_favoured(top8000):
    """At every Top8000 grid point: V = 0 if and only if MolProbity calls it favoured."""
    for c, name in enumerate(POTENTIAL.classes):
        grid = top8000[name]
        nodes = POTENTIAL.origin + POTENTIAL.spacing * np.arange(POTENTIAL.table.shape[1])
        assert np.allclose(grid.lower[0] + grid.bin_width[0] * (np.arange(grid.n_bins[0]) + 0.5), nodes)
        status = np.vectorize(lambda v: classify(v, name))(grid.values)
        favoured = status == FAVOURED
        assert np.all(POTENTIAL.table[c][favoured] == 0.0), name
        assert np.all(POTENTIAL.table[c][~favoured] > 0.0), name
        # and the interpolated potential at the node angles agrees
        rng = np.random.default_rng(c)
        for i, j in zip(rng.integers(0, 180, 300), rng.integers(0, 180, 300)):
            value = potential_at(POTENTIAL.table, POTENTIAL.origin, POTENTIAL.spacing, c,
                                 nodes[i], nodes[j])[0]
            assert (value == 0.0) == favoured[i, j]


@needs_top8000
def test_interpolated_potential_between_nodes_follows_validation(top8000):
    """Off the nodes: zero wherever the whole 2° cell is favoured, positive at every
    point validation calls an outlier, and at favoured points in cells straddling the
    contour no larger than the potential one node outside the favoured region."""
    rng = np.random.default_rng(11)
    for c, name in enumerate(POTENTIAL.classes):
        grid = top8000[name]
        points = rng.uniform(-180.0, 180.0, size=(4000, 2))
        status = [classify(v, name) for v in grid.value_at(points)]
        u = (points - POTENTIAL.origin) / POTENTIAL.spacing
        i0, j0 = np.floor(u).astype(int).T
        corners_favoured = np.all([POTENTIAL.table[c][(i0 + a) % 180, (j0 + b) % 180] == 0.0
                                   for a in (0, 1) for b in (0, 1)], axis=0)
        values = np.array([potential_at(POTENTIAL.table, POTENTIAL.origin, POTENTIAL.spacing, c, p, q)[0]
                           for p, q in points])
        assert np.all(values >= 0.0)
        assert np.all(values[corners_favoured] == 0.0)
        favoured_nodes = POTENTIAL.table[c] == 0.0
        next_to_favoured = np.zeros_like(favoured_nodes)
        for a in (-1, 0, 1):
            for b in (-1, 0, 1):
                next_to_favoured |= np.roll(np.roll(favoured_nodes, a, 0), b, 1)
        rim = POTENTIAL.table[c][next_to_favoured & ~favoured_nodes].max()
        assert np.all(values[np.array(status) == FAVOURED] <= rim)
        outlier = np.array(status) == OUTLIER
        assert outlier.any() and np.all(values[outlier] > 0.0)
        assert np.all(np.array(status)[corners_favoured] == FAVOURED)


def test_descent_on_the_potential_reaches_the_favoured_region_from_anywhere():
    """No trap outside the favoured region: steepest descent on the interpolated V from
    random (phi, psi), including deep outliers, ends where V = 0."""
    rng = np.random.default_rng(12)
    for c in range(len(POTENTIAL.classes)):
        for phi, psi in rng.uniform(-180.0, 180.0, size=(40, 2)):
            value = np.inf
            for _ in range(3000):
                value, d_phi, d_psi = potential_at(POTENTIAL.table, POTENTIAL.origin,
                                                   POTENTIAL.spacing, c, phi, psi)
                if value == 0.0:
                    break
                norm = np.hypot(d_phi, d_psi)
                assert norm > 0.0, (POTENTIAL.classes[c], phi, psi)
                step = min(0.5, 0.5 * value / norm)  # at most 0.5°, smaller near the edge
                phi -= step * d_phi / norm
                psi -= step * d_psi / norm
            assert value < 1e-3, (POTENTIAL.classes[c], phi, psi, value)


# --------------------------------------------------------------------------- residues


@needs_top8000
@needs_models
@pytest.mark.parametrize("name", ["1crn.pdb", "1ubq.pdb", "3j6r.pdb"])
def test_deposited_models_zero_in_favoured_positive_for_outliers(name, top8000):
    m = model(name)
    residues = find_ramachandran_residues(m)
    status = status_by_residue(m, m.xyz, top8000)
    assert sorted(status) == list(residues.residue)  # the residues validation evaluates
    values = potentials(m.xyz, residues)
    labels = np.array([status[r] for r in residues.residue])
    # V is zero for every favoured residue of these small, well-refined crystal structures
    if name != "3j6r.pdb":
        assert np.all(values[labels == FAVOURED] == 0.0)
    else:  # a 4 Å cryo-EM model: its outliers all feel the restraint
        assert np.sum(labels == OUTLIER) > 50
        assert np.all(values[labels == OUTLIER] > 0.0)
        assert np.mean(values[labels == FAVOURED] == 0.0) > 0.95


@needs_models
def test_residue_finding_skips_chain_ends_and_breaks():
    m = model("1ubq.pdb")
    residues = find_ramachandran_residues(m)
    protein = np.unique(m.residue_index[~m.is_water])
    assert list(residues.residue) == list(protein[1:-1])  # one chain: all but the ends
    angles = phi_psi(m.xyz, residues.atoms)
    table = ResidueTable(m)
    for k in (0, 10, len(residues) - 1):
        r = residues.residue[k]
        expected = dihedral_deg(*(m.xyz[[table.atom(r - 1, "C")]], m.xyz[[table.atom(r, "N")]],
                                  m.xyz[[table.atom(r, "CA")]], m.xyz[[table.atom(r, "C")]]))
        assert angles[k, 0] == pytest.approx(expected[0], abs=1e-9)
    # a chain break: residues 30.. moved 5 Å away leave C(29)-N(30) unbonded
    break_after = residues.residue[27]
    moved = m.xyz.copy()
    moved[m.residue_index > break_after] += 5.0
    broken = find_ramachandran_residues(m, moved)
    assert set(residues.residue) - set(broken.residue) == {break_after, break_after + 1}


@needs_models
def test_residue_finding_skips_residues_with_missing_backbone_atoms():
    st = gemmi.read_structure(str(MODELS / "1ubq.pdb"))
    residue = st[0]["A"][40]
    del residue[[a.name for a in residue].index("N")]
    m = Model.from_structure(st)
    residues = find_ramachandran_residues(m)
    full = find_ramachandran_residues(model("1ubq.pdb"))
    assert set(full.residue) - set(residues.residue) == {39, 40}  # psi of 39, phi of 40


@needs_models
def test_multi_chain_model_skips_every_chain_end():
    m = model("3j6r.pdb")
    residues = find_ramachandran_residues(m)
    table = ResidueTable(m)
    first_and_last = set()
    for chain in np.unique(table.chain):
        members = np.flatnonzero((table.chain == chain) & table.is_amino_acid)
        first_and_last |= {members[0], members[-1]}
    assert len(np.unique(table.chain)) > 1
    assert not first_and_last & set(residues.residue)


@needs_models
@pytest.mark.parametrize("name", ["1crn.pdb", "1orc.pdb", "3j6r.pdb"])
def test_classes_follow_the_molprobity_definition(name):
    """Class by residue names and the preceding omega, written out independently here."""
    m = model(name)
    residues = find_ramachandran_residues(m)
    table = ResidueTable(m)
    found = set()
    for k, r in enumerate(residues.residue):
        name_r, name_next = table.name[r], table.name[r + 1]
        omega = dihedral_deg(m.xyz[[table.atom(r - 1, "CA")]], m.xyz[[table.atom(r - 1, "C")]],
                             m.xyz[[table.atom(r, "N")]], m.xyz[[table.atom(r, "CA")]])[0]
        if name_r == "GLY":
            expected = "glycine"
        elif name_r == "PRO":
            expected = "cis-proline" if abs(omega) < CIS_OMEGA_LIMIT else "trans-proline"
        elif name_next == "PRO":
            expected = "pre-proline"
        elif name_r in ("ILE", "VAL"):
            expected = "isoleucine-valine"
        else:
            expected = "general"
        assert residues.class_name[k] == expected, (residues.label[k], omega)
        found.add(expected)
    if name == "3j6r.pdb":
        assert found == set(RAMA_CLASSES)
    if name == "1orc.pdb":
        assert "cis-proline" in found


# --------------------------------------------------------------------------- the term


def setup_for(m, **options):
    return TermSetup(model=m, restraints=None, packed=None, density=None,
                     options=SimpleNamespace(**options), start=m.xyz[None])


@needs_models
def test_build_switch_weight_and_empty_models():
    m = model("1ubq.pdb")
    assert rama_term.build(setup_for(m, ramachandran=False)) is None
    term = rama_term.build(setup_for(m))
    assert term.name == "ramachandran" and term.kind == "restraint"
    assert np.all(term.weights == rama_term.RAMACHANDRAN_WEIGHT)
    heavier = rama_term.build(setup_for(m, ramachandran=True, ramachandran_weight=7.5))
    assert np.all(heavier.weights == 7.5)
    st = gemmi.read_structure(str(MODELS / "1crn.pdb"))
    for chain in st[0]:
        for k in range(len(chain) - 1, 1, -1):
            del chain[k]  # two peptide-linked residues: neither has both phi and psi
    assert rama_term.build(setup_for(Model.from_structure(st))) is None


@needs_models
def test_term_values_gradients_and_subset():
    m = model("1ubq.pdb")
    term = rama_term.build(setup_for(m, ramachandran_weight=2.0))
    rng = np.random.default_rng(13)
    xyz = np.stack([m.xyz + rng.normal(scale=0.4, size=m.xyz.shape) for _ in range(3)])
    values, gradient = term.evaluate(xyz, np.arange(3))
    residues = find_ramachandran_residues(m)
    for k in range(3):
        assert values[k] == pytest.approx(2.0 * potentials(xyz[k], residues).sum(), rel=1e-12)
    assert np.all(values > 0) and gradient.shape == xyz.shape
    # moving only atoms outside every restrained residue changes nothing
    untouched = np.setdiff1d(np.arange(m.n_atoms), term.atoms.ravel())
    assert np.all(gradient[:, untouched] == 0.0)
    # a subset keeps the residues wholly inside it, renumbered
    atoms = np.flatnonzero((m.residue_index >= 10) & (m.residue_index <= 20))
    part = term.subset(atoms)
    inside = np.all(np.isin(term.atoms, atoms), axis=1)
    assert len(part) == inside.sum() == 9  # residues 11..19 have both neighbours inside
    sub_values, sub_gradient = part.evaluate(xyz[:, atoms], np.arange(3))
    rows = rama_term.RamachandranTerm(term.atoms[inside], term.classes[inside],
                                      term.weights[inside], term.potential, m.n_atoms)
    full_values, full_gradient = rows.evaluate(xyz, np.arange(3))
    assert np.allclose(sub_values, full_values, rtol=1e-12)
    assert np.allclose(sub_gradient, full_gradient[:, atoms], rtol=1e-12, atol=1e-12)
    assert term.subset(np.arange(5)) is None


# --------------------------------------------------------------------------- minimisation


def rotate(xyz, axis_from, axis_to, moving, degrees):
    a = xyz[axis_from]
    u = (xyz[axis_to] - a) / np.linalg.norm(xyz[axis_to] - a)
    t = np.radians(degrees)
    p = xyz[moving] - a
    xyz[moving] = (a + p * np.cos(t) + np.cross(u, p) * np.sin(t)
                   + np.outer(p @ u, u) * (1.0 - np.cos(t)))


def twist(m, xyz, residue: int, phi: float, psi: float) -> None:
    """Set phi/psi of ``residue`` (index) by rotating everything after it (ideal geometry)."""
    table = ResidueTable(m)
    n, ca, c = (table.atom(residue, a) for a in ("N", "CA", "C"))
    later = m.residue_index > residue
    own = m.residue_index == residue
    now = dihedral_deg(xyz[[table.atom(residue - 1, "C")]], xyz[[n]], xyz[[ca]], xyz[[c]])[0]
    rotate(xyz, n, ca, np.flatnonzero(later | (own & ~np.isin(m.atom_name, ["N", "H", "CA"]))), phi - now)
    now = dihedral_deg(xyz[[n]], xyz[[ca]], xyz[[c]], xyz[[table.atom(residue + 1, "N")]])[0]
    rotate(xyz, ca, c, np.flatnonzero(later | (own & np.isin(m.atom_name, ["O", "OXT"]))), psi - now)


@needs_top8000
@needs_models
def test_minimisation_brings_twisted_residues_out_of_the_outlier_region(top8000):
    """Geometry restraints + this term, no map: three residues of the ubiquitin C-terminal
    tail twisted into deep outlier regions come back to allowed or favoured, with bonds and
    angles intact; geometry restraints alone leave outliers."""
    from varref.engine.geometry_stats import geometry_statistics
    from varref.restraints import build_restraints

    m = model("1ubq.pdb")
    restraints = build_restraints(m)
    xyz = m.xyz.copy()
    twisted = {70: (100.0, 60.0), 71: (100.0, -150.0), 72: (80.0, -150.0)}  # residue index: phi, psi
    for residue, (phi, psi) in twisted.items():
        twist(m, xyz, residue, phi, psi)
    before = status_by_residue(m, xyz, top8000)
    assert all(before[r] == OUTLIER for r in twisted)

    def minimise(terms):
        objective = Objective(terms, 1.0, xyz[None])
        result = minimise_lbfgs(objective, objective.pack(xyz[None]), max_iterations=400)
        return objective.unpack(result.x, np.array([0]))[0]

    geometry_only = minimise([GeometryTerm(restraints)])
    assert any(status_by_residue(m, geometry_only, top8000)[r] == OUTLIER for r in twisted)

    term = rama_term.build(setup_for(m))
    refined = minimise([GeometryTerm(restraints), term])
    after = status_by_residue(m, refined, top8000)
    assert all(after[r] in (FAVOURED, "allowed") for r in twisted), {r: after[r] for r in twisted}
    assert sum(status == OUTLIER for status in after.values()) == 0
    geometry = geometry_statistics(refined, restraints)
    assert geometry["bonds"]["rmsd"] < 0.01 and geometry["angles"]["rmsd"] < 1.5
