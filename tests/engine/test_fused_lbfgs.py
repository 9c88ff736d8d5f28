"""The fused trial minimiser (varref.engine.fused_lbfgs) against the Python path it replaces
in the weight search: every term kind's slot gives the Python term's value and gradient bit
for bit, the fused objective's gradient matches finite differences, and a whole segment
trial (all eight kinds: map, geometry, Ramachandran, C-beta, rotamers, reference model,
secondary structure, NCS) ends at the same coordinates to the last bit."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from tests.conftest import shared_file
from tests.engine.gradient_check import numerical_gradient
from varref.engine import fused_lbfgs
from varref.engine.restraint_target import pack_restraints
from varref.model import read_model
from varref.perturbation import perturb
from varref.refinement import weight as weight_module
from varref.refinement.lbfgs import minimise_lbfgs
from varref.refinement.objective import Objective
from varref.refinement.options import RefineOptions
from varref.refinement.terms import MACRO, build_data_terms, build_restraint_terms
from varref.refinement.terms.base import TermSetup
from varref.refinement.terms.density_correlation import DensityCorrelationTerm
from varref.refinement.weight import DEFAULT_LADDER, fused_arguments, polymer_segments
from varref.restraints import build_restraints
from varref.simulate import simulate_map

TRPV1 = "maps/emd5778_trpv1_tm/3j5p_transmem_4chains_originalframe.pdb"
KINDS = ("map_value", "geometry", "ramachandran", "cbeta", "rotamer", "secondary_structure",
         "reference", "ncs")


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    """Two chains of the TRPV1 tetramer (NCS copies), a perturbed start, its 3 Å map, and
    every term of the objective, with the reference model and secondary structure on."""
    import gemmi

    st = gemmi.read_structure(str(shared_file(TRPV1)))
    for name in [chain.name for chain in st[0]][2:]:
        st[0].remove_chain(name)
    path = tmp_path_factory.mktemp("fused") / "two_chains.pdb"
    st.write_pdb(str(path))
    model = read_model(path)
    restraints = build_restraints(model)
    start = perturb(model, restraints, 0.3, seed=4)
    density = simulate_map(model, 3.0).normalised()
    options = RefineOptions(resolution=3.0, secondary_structure=True, reference_model="start")
    setup = TermSetup(model, restraints, pack_restraints(restraints), density, options,
                      start[np.newaxis])
    terms = build_data_terms(setup, MACRO) + build_restraint_terms(setup)
    assert tuple(t.name for t in terms) == KINDS  # every kind is exercised
    return model, restraints, start, terms


def _segment_terms(model, start, terms, index=3):
    """The terms restricted to a segment of chain A, the same residues of chain B (so that
    NCS restraints survive the subset) and their 5 Å environment, as the weight search
    restricts its terms; the (atoms, moving) of that subset."""
    segment = polymer_segments(model, 10)[index]
    in_segment = np.isin(model.residue_index, segment)
    numbers = np.unique(model.residue_number[in_segment])
    copy = (model.chain_id != model.chain_id[in_segment][0]) & np.isin(model.residue_number, numbers)
    atoms = np.flatnonzero(in_segment | copy)
    near = cKDTree(start).query_ball_point(start[atoms], 5.0)
    sub = np.unique(np.concatenate([atoms, *map(np.asarray, near)])).astype(np.int64)
    return sub, np.isin(sub, atoms), [t for term in terms if (t := term.subset(sub)) is not None]


@pytest.mark.parametrize("kind", KINDS[2:])
def test_each_slot_equals_its_python_term_bit_for_bit(system, kind):
    model, _, start, terms = system
    sub, _, sub_terms = _segment_terms(model, start, terms)
    chosen = [t for t in sub_terms if t.name in ("map_value", "geometry", kind)]
    assert len(chosen) == 3, f"the segment has no {kind} restraint"
    order, slots = fused_arguments(chosen)
    xyz = start[sub] + np.random.default_rng(1).normal(0, 0.05, (len(sub), 3))
    value, gradient = fused_lbfgs.fused_value_gradient(xyz, 3.7, order, slots)
    expected_value, expected_gradient = Objective(chosen, [3.7], xyz[np.newaxis]).evaluate(
        xyz[np.newaxis], np.array([0]))
    assert value == expected_value[0]
    np.testing.assert_array_equal(gradient, expected_gradient[0])


def test_fused_objective_gradient_matches_finite_differences(system):
    model, _, start, terms = system
    sub, _, sub_terms = _segment_terms(model, start, terms)
    order, slots = fused_arguments(sub_terms)
    assert len(order) == len(KINDS)
    xyz = start[sub] + np.random.default_rng(2).normal(0, 0.1, (len(sub), 3))
    # the pair list is built at the evaluated point, and a 1e-5 Å step never crosses its
    # buffer: the finite differences see the same pairs
    _, gradient = fused_lbfgs.fused_value_gradient(xyz, 2.0, order, slots)
    numeric = numerical_gradient(lambda x: fused_lbfgs.fused_value_gradient(x, 2.0, order, slots)[0],
                                 xyz)
    np.testing.assert_allclose(gradient, numeric, rtol=1e-4, atol=1e-4 * np.abs(numeric).max())


def test_segment_trial_fused_equals_python_path_bit_for_bit(system):
    model, restraints, start, terms = system
    tree = cKDTree(start)
    segment = polymer_segments(model, 10)[5]
    data, restraint_terms = terms[:1], terms[1:]
    runs = [weight_module._trial_segment(model, restraints, restraint_terms, data, start, segment,
                                         tree, DEFAULT_LADDER, 40, 5.0, 0.01, 1.0, fused=fused)
            for fused in (False, True)]
    python, fused = runs
    np.testing.assert_array_equal(fused.bond_rmsd, python.bond_rmsd)
    np.testing.assert_array_equal(fused.angle_rmsd, python.angle_rmsd)
    assert fused.chosen_weight == python.chosen_weight
    # the trials moved: a minimiser that returned its start would also agree with itself
    assert not np.allclose(python.bond_rmsd, python.bond_rmsd[0])


def test_minimisation_fused_equals_python_path_bit_for_bit(system):
    """All eight kinds in one minimisation of K = 9 problems (the ladder)."""
    model, _, start, terms = system
    sub, moving, sub_terms = _segment_terms(model, start, terms)
    order, slots = fused_arguments(sub_terms)
    assert len(order) == len(KINDS)
    begin = np.repeat(start[sub][np.newaxis], len(DEFAULT_LADDER), axis=0)
    fused, _ = fused_lbfgs.minimise_fused(begin, moving, DEFAULT_LADDER, order, slots,
                                          max_iterations=40, max_step=0.5)
    target = Objective(sub_terms, DEFAULT_LADDER, begin, moving=moving)
    python = target.unpack(minimise_lbfgs(target, target.pack(begin), max_iterations=40,
                                          max_step=0.5).x, np.arange(len(DEFAULT_LADDER)))
    np.testing.assert_array_equal(fused, python)
    assert np.abs(fused - begin).max() > 0.05


def test_minimise_fused_moves_only_the_moving_atoms_and_lowers_the_objective(system):
    model, _, start, terms = system
    sub, moving, sub_terms = _segment_terms(model, start, terms)
    order, slots = fused_arguments(sub_terms)
    begin = np.repeat(start[sub][np.newaxis], 3, axis=0)
    weights = np.array([0.3, 10.0, 300.0])
    out, iterations = fused_lbfgs.minimise_fused(begin, moving, weights, order, slots,
                                                 max_iterations=30, max_step=0.5)
    np.testing.assert_array_equal(out[:, ~moving], begin[:, ~moving])
    assert np.all(iterations > 0)
    for k in range(3):
        before = fused_lbfgs.fused_value_gradient(begin[k], weights[k], order, slots)[0]
        after = fused_lbfgs.fused_value_gradient(out[k], weights[k], order, slots)[0]
        assert after < before
    # the heavier the map weight, the further the segment goes from its restrained start
    moved = np.sqrt(((out[:, moving] - begin[:, moving]) ** 2).sum(-1).mean(-1))
    assert moved[0] < moved[2]


def test_terms_without_a_fused_form_fall_back_to_python(system):
    model, _, start, terms = system
    sub, _, sub_terms = _segment_terms(model, start, terms)
    assert fused_arguments(sub_terms) is not None
    assert fused_arguments(sub_terms[1:]) is None  # no map term
    assert fused_arguments([sub_terms[0]] + sub_terms[2:]) is None  # no geometry
    assert fused_arguments(sub_terms[:1] + sub_terms) is None  # the map twice

    class Opaque:  # a user's term: evaluate/subset only
        name, kind = "opaque", "restraint"

    assert fused_arguments(sub_terms + [Opaque()]) is None
    assert not hasattr(DensityCorrelationTerm, "fused_slot")


def test_bad_order_is_refused(system):
    model, _, start, terms = system
    sub, moving, sub_terms = _segment_terms(model, start, terms)
    order, slots = fused_arguments(sub_terms)
    with pytest.raises(ValueError, match="map"):
        fused_lbfgs.fused_value_gradient(start[sub], 1.0, order[::-1].copy(), slots)
    with pytest.raises(ValueError, match="twice"):
        fused_lbfgs.fused_value_gradient(start[sub], 1.0, np.r_[order, order[1]], slots)
    with pytest.raises(ValueError, match="max_step"):
        fused_lbfgs.minimise_fused(start[sub][np.newaxis], moving, [1.0], order, slots, 5, 0.0)


@pytest.fixture(scope="module")
def riding_system():
    """Crambin with its hydrogens riding, a perturbed start, a 3 Å map and the terms of the
    refinement (restraints that only place hydrogens dropped, as the pipeline does)."""
    from varref.refinement.riding import RidingHydrogens
    from varref.restraints.hydrogens import add_riding_hydrogens

    model = add_riding_hydrogens(read_model(shared_file("models/1crn.pdb")))
    restraints = build_restraints(model)
    riding = RidingHydrogens.from_model(model, restraints)
    start = riding.place(perturb(model, restraints, 0.3, seed=6))
    density = simulate_map(model, 3.0).normalised()
    kept = riding.restraints(restraints)
    setup = TermSetup(model, kept, pack_restraints(kept), density, RefineOptions(resolution=3.0),
                      start[np.newaxis])
    return model, restraints, riding, start, build_data_terms(setup, MACRO), build_restraint_terms(setup)


def test_riding_trial_fused_equals_python_path_bit_for_bit(riding_system):
    """The weight search's trials with riding hydrogens: the fused minimiser (hydrogens
    placed from their parents, their gradient folded onto them) ends where the Python
    minimiser with Objective(riding=...) ends, to the last bit."""
    model, restraints, riding, start, data, restraint_terms = riding_system
    tree = cKDTree(start)
    segment = polymer_segments(model, 10)[2]
    runs = [weight_module._trial_segment(model, restraints, restraint_terms, data, start, segment,
                                         tree, DEFAULT_LADDER, 40, 5.0, 0.01, 1.0, fused=fused,
                                         riding=riding)
            for fused in (False, True)]
    python, fused = runs
    np.testing.assert_array_equal(fused.bond_rmsd, python.bond_rmsd)
    np.testing.assert_array_equal(fused.angle_rmsd, python.angle_rmsd)
    assert not np.allclose(python.angle_rmsd, python.angle_rmsd[0])


def test_minimise_fused_keeps_riding_hydrogens_on_their_parents(riding_system):
    model, _, riding, start, data, restraint_terms = riding_system
    atoms = np.arange(model.n_atoms)
    moving = np.isin(model.residue_index, np.arange(5, 15))
    sub_riding = riding.subset(atoms, start)
    terms = data + restraint_terms
    order, slots = fused_arguments(terms)
    begin = np.repeat(start[np.newaxis], 3, axis=0)
    weights = np.array([1.0, 10.0, 100.0])
    out, _ = fused_lbfgs.minimise_fused(begin, moving, weights, order, slots, max_iterations=25,
                                        max_step=0.5,
                                        riding=(sub_riding.hydrogen, sub_riding.parent))
    target = Objective(terms, weights, begin, moving=moving, riding=sub_riding)
    python = target.unpack(minimise_lbfgs(target, target.pack(begin), max_iterations=25,
                                          max_step=0.5).x, np.arange(3))
    np.testing.assert_array_equal(out, python)
    h, p = sub_riding.hydrogen, sub_riding.parent
    np.testing.assert_allclose(out[:, h] - out[:, p], begin[:, h] - begin[:, p], atol=1e-12)
    moved = np.abs(out - begin).max(axis=(0, 2))
    assert moved[moving & ~model.is_hydrogen].max() > 0.05
    # hydrogens of moving atoms moved with them; nothing else moved
    assert moved[h[moving[p]]].max() > 0.05
    assert moved[~np.isin(atoms, np.concatenate([np.flatnonzero(moving), h[moving[p]]]))].max() == 0
