"""Riding hydrogens: placement from the parents' frames, the restraints they keep, the
objective's gradient with hydrogens folded onto their parents, and what riding does for a
refinement (docs/methods-refinement.md, "Hydrogens")."""

from __future__ import annotations

import numpy as np
import pytest

import varref
from tests.engine.gradient_check import numerical_gradient
from varref.errors import InputError
from varref.model import read_model
from varref.refinement.objective import Objective
from varref.refinement.options import RefineOptions
from varref.refinement.riding import RidingHydrogens
from varref.refinement.terms import MACRO, TermSetup, build_data_terms, build_restraint_terms
from varref.restraints import build_restraints
from varref.restraints.arrays import HBOND_CODES
from varref.restraints.graph import hydrogen_parents
from varref.validation.clashes import add_riding_hydrogens


@pytest.fixture(scope="module")
def hydrogenated():
    """A poly-Ala helix with its hydrogens, its restraints and riding model."""
    model = add_riding_hydrogens(varref.example_helix(8))
    restraints = build_restraints(model)
    return model, restraints, RidingHydrogens.from_model(model, restraints)


def test_hydrogens_follow_a_rigid_motion_of_their_residues(hydrogenated):
    model, _, riding = hydrogenated
    assert riding.framed.all() and len(riding.hydrogen) == model.is_hydrogen.sum()
    rotation, _ = np.linalg.qr(np.random.default_rng(3).standard_normal((3, 3)))
    shift = np.array([4.0, -2.0, 7.5])
    expected = riding.place(model.xyz) @ rotation.T + shift
    moved = model.xyz @ rotation.T + shift
    moved[riding.hydrogen] = moved[riding.parent]  # wherever they were, placed again
    np.testing.assert_allclose(riding.place(moved), expected, atol=1e-9)
    # (K, N, 3) batches place every problem
    batch = riding.place(np.stack([moved, moved + 1.0]))
    np.testing.assert_allclose(batch[1], expected + 1.0, atol=1e-9)


def test_placed_hydrogens_keep_their_bond_lengths_when_the_heavy_atoms_move(hydrogenated):
    """X-H lengths are the restraints' ideal ones (the library's placement may use others),
    however the heavy atoms moved."""
    model, restraints, riding = hydrogenated
    xyz = model.xyz + 0.15 * np.random.default_rng(5).standard_normal(model.xyz.shape)
    placed = riding.place(xyz)
    heavy = ~model.is_hydrogen
    np.testing.assert_array_equal(placed[heavy], xyz[heavy])
    bonds = restraints.bonds
    to_h = model.is_hydrogen[bonds.atoms].any(axis=1)
    lengths = np.linalg.norm(placed[bonds.atoms[to_h, 0]] - placed[bonds.atoms[to_h, 1]], axis=1)
    np.testing.assert_allclose(lengths, bonds.ideal[to_h], atol=1e-9)


def test_riding_restraints_drop_only_what_places_hydrogens(hydrogenated):
    model, restraints, riding = hydrogenated
    kept = riding.restraints(restraints)
    h = model.is_hydrogen
    for kind in ("bonds", "angles", "torsions", "chirals"):
        full, reduced = getattr(restraints, kind), getattr(kept, kind)
        assert not h[reduced.atoms].any()
        # every restraint among heavy atoms is still there
        assert len(reduced) == int((~h[full.atoms].any(axis=1)).sum()) > 0
    # planes lose their hydrogens and go when fewer than four atoms remain (e.g. N, CA and
    # the previous C of the plane that holds the amide H)
    p = restraints.planes
    heavy_counts = [int((~h[p.atoms[p.offsets[k]:p.offsets[k + 1]]]).sum()) for k in range(len(p))]
    assert not h[kept.planes.atoms].any()
    assert len(kept.planes) == sum(c >= 4 for c in heavy_counts) < len(p)
    assert kept.nonbonded is restraints.nonbonded  # hydrogens keep their repulsion


def test_objective_gradient_with_riding_hydrogens_matches_finite_differences(hydrogenated):
    """Variables are the heavy atoms; each hydrogen sits at its parent plus a fixed offset,
    so its gradient adds to its parent's: checked against central differences of the
    total (map term and every restraint term, the non-bonded one with hydrogens)."""
    model, restraints, riding = hydrogenated
    density = varref.simulate_map(model, 3.0).prepared(model.xyz, 6.0)
    start = model.xyz + 0.2 * np.random.default_rng(11).standard_normal(model.xyz.shape)
    start = riding.place(start)[np.newaxis]
    kept = riding.restraints(restraints)
    from varref.engine.restraint_target import pack_restraints

    setup = TermSetup(model, kept, pack_restraints(kept), density,
                      RefineOptions(resolution=3.0), start)
    terms = build_data_terms(setup, MACRO) + build_restraint_terms(setup)
    objective = Objective(terms, [5.0], start, riding=riding)
    x0 = objective.pack(start)
    assert x0.shape == (1, 3 * int((~model.is_hydrogen).sum()))
    members = np.array([0])
    _, analytic = objective(x0, members)
    numeric = numerical_gradient(lambda x: float(objective(x[np.newaxis], members)[0][0]),
                                 x0[0], step=1e-5)
    np.testing.assert_allclose(analytic[0], numeric, rtol=1e-5, atol=1e-5)
    # a hydrogen moves with its parent in the unpacked coordinates
    shifted = x0.copy().reshape(1, -1, 3)
    shifted[0, :] += np.array([0.3, 0.0, 0.0])
    full = objective.unpack(shifted.reshape(1, -1), members)[0]
    np.testing.assert_allclose(full - start[0], np.tile([0.3, 0.0, 0.0], (model.n_atoms, 1)),
                               atol=1e-12)


def test_hydrogens_on_donors_are_hydrogen_bond_hydrogens(shared):
    """The monomer library types every protein hydrogen "H" (no H-bond role); on a donor
    (N, O) it must be an H-bond hydrogen, or a backbone N-H...O=C bond is repelled."""
    model = add_riding_hydrogens(read_model(shared("models/1crn.pdb")))
    restraints = build_restraints(model)
    parent = hydrogen_parents(model.is_hydrogen, restraints.bonds.atoms)
    hydrogens = np.flatnonzero(parent >= 0)
    on = np.char.upper(model.element[parent[hydrogens]].astype(str))
    codes = restraints.nonbonded.hbond_type[hydrogens]
    assert (codes[np.isin(on, ("N", "O"))] == HBOND_CODES["H"]).all()
    assert (codes[on == "C"] == HBOND_CODES["N"]).all()
    assert np.isin(on, ("N", "O")).sum() > 50 and (on == "C").sum() > 200


def test_riding_hydrogens_refine_a_perturbed_model_as_well_or_better(shared):
    """Crambin with its hydrogens, three 1 Å perturbations of it, a simulated 3 Å map:
    refined as free atoms, the stiff X-H bonds slow L-BFGS; riding, the starts end nearer
    the truth (heavy atoms; measured 0.100 / 0.125 / 0.132 Å against 0.121 / 0.207 /
    0.125 Å — each mode with the weight it finds; with the weight rule before 2026-12-02,
    0.100 / 0.111 / 0.135 against 0.151 / 0.193 / 0.147 Å)."""
    truth = add_riding_hydrogens(read_model(shared("models/1crn.pdb")))
    restraints = build_restraints(truth)
    density = varref.simulate_map(truth, 3.0, snr=30.0, seed=2)
    heavy = ~truth.is_hydrogen
    found = {"riding": [], "restrained": []}
    for seed in (1, 2, 3):
        start = varref.perturb(truth, 1.0, seed=seed, restraints=restraints)
        for mode in found:
            result = varref.refine(truth, density, 3.0, xyz=start, restraints=restraints,
                                   hydrogens=mode, macro_cycles=3, fsc=False)
            error = result.xyz[heavy] - truth.xyz[heavy]
            found[mode].append(float(np.sqrt(np.mean(np.sum(error ** 2, axis=1)))))
    assert np.mean(found["riding"]) < 0.85 * np.mean(found["restrained"]), found
    assert max(found["riding"]) < 0.15, found


def test_added_hydrogens_ride_and_are_written(tmp_path):
    model = varref.example_helix(6)
    density = varref.simulate_map(model, 3.0)
    result = varref.refine(model, density, 3.0, hydrogens="add", macro_cycles=1, final_cc=False,
                           adp=False, fsc=False)
    assert result.model.is_hydrogen.sum() == result.start.is_hydrogen.sum() > model.n_atoms // 2
    assert result.after["cc_mask"] > 0.9
    with pytest.raises(InputError, match="--hydrogens"):
        varref.refine(model, density, 3.0, hydrogens="add", restraints=build_restraints(model))
    with pytest.raises(InputError, match="--hydrogens"):
        RefineOptions(resolution=3.0, hydrogens="implicit")


def test_a_batch_with_riding_hydrogens_equals_single_runs(hydrogenated):
    """Riding offsets are per problem: K = 2 in one batch gives each its own result."""
    from varref.refinement.pipeline import refine_coordinates

    model, restraints, _ = hydrogenated
    density = varref.simulate_map(model, 3.0, snr=30.0, seed=4).prepared(model.xyz, 6.0)
    starts = np.stack([varref.perturb(model, 0.5, seed=s, restraints=restraints) for s in (1, 2)])
    options = RefineOptions(resolution=3.0, macro_cycles=2, weight=10.0, adp=False,
                            rotamer_fit=False)
    together = refine_coordinates(model, density, restraints, starts, options)
    for k in range(2):
        alone = refine_coordinates(model, density, restraints, starts[k], options)
        np.testing.assert_allclose(together.xyz[k], alone.xyz[0], atol=1e-8)
    assert not np.allclose(together.xyz[0], together.xyz[1])


def test_a_collapsed_frame_leaves_its_hydrogens_where_they_are(hydrogenated):
    model, _, riding = hydrogenated
    xyz = model.xyz.copy()
    k = int(np.flatnonzero(riding.framed)[0])
    xyz[riding.frame_a[k]] = xyz[riding.parent[k]]  # A on top of P: no frame
    placed = riding.place(xyz)
    assert np.isfinite(placed).all()
    np.testing.assert_array_equal(placed[riding.hydrogen[k]], xyz[riding.hydrogen[k]])


def test_the_alternating_series_step_lets_hydrogens_ride(hydrogenated):
    """A series frame refined beside its neighbours (the alternating scheme) keeps ideal
    X-H bonds: its hydrogens ride as in refine_coordinates."""
    from varref.refinement.trajectory import NeighbourPrior, refine_frame_with_neighbours

    model, restraints, _ = hydrogenated
    density = varref.simulate_map(model, 3.0).prepared(model.xyz, 6.0)
    start = varref.perturb(model, 0.4, seed=3, restraints=restraints)[np.newaxis]
    prior = NeighbourPrior(0.5, 1, 3, {-1: start.copy(), 1: start.copy()})
    options = RefineOptions(resolution=3.0, weight=10.0, macro_cycles=2)
    xyz, iterations = refine_frame_with_neighbours(model, density, restraints, start, options,
                                                   prior, 2)
    bonds = restraints.bonds
    to_h = model.is_hydrogen[bonds.atoms].any(axis=1)
    lengths = np.linalg.norm(xyz[0, bonds.atoms[to_h, 0]] - xyz[0, bonds.atoms[to_h, 1]], axis=1)
    np.testing.assert_allclose(lengths, bonds.ideal[to_h], atol=1e-9)
    assert iterations[0] > 0


def test_a_subset_keeps_the_hydrogens_whose_parents_it_holds(hydrogenated):
    """The weight search's segments ride their hydrogens too: a subset renumbers the pairs
    inside it and translates them by their offsets."""
    model, _, riding = hydrogenated
    atoms = np.flatnonzero(model.residue_index <= 2)
    atoms = atoms[atoms != riding.parent[0]]  # a parent left out: its hydrogens go too
    sub = riding.subset(atoms, model.xyz)
    inside = np.isin(riding.hydrogen, atoms) & np.isin(riding.parent, atoms)
    assert len(sub.hydrogen) == inside.sum() > 0
    np.testing.assert_array_equal(atoms[sub.hydrogen], riding.hydrogen[inside])
    np.testing.assert_array_equal(atoms[sub.parent], riding.parent[inside])
    xyz = model.xyz[atoms] + 1.5
    np.testing.assert_allclose(sub.place(xyz), model.xyz[atoms] + 1.5, atol=1e-12)


def test_hydrogens_are_built_from_the_dictionaries_the_restraints_came_from(shared, tmp_path,
                                                                            caplog):
    """A residue only an extra dictionary knows (crambin's SER 6 renamed SRX): the restraints
    record that dictionary, and the riding frames and the clash search build the model's
    hydrogens with it, where the default library alone cannot."""
    import logging

    from tests.test_restraints import _rename_residue
    from varref.monlib import packaged_monomer_library
    from varref.refinement.riding import ideal_hydrogen_positions
    from varref.validation.clashes import clashes_and_topology

    renamed = tmp_path / "srx.pdb"
    _rename_residue(shared("models/1crn.pdb"), renamed, "SER", "SRX")
    dictionary = tmp_path / "SRX.cif"
    dictionary.write_text((packaged_monomer_library() / "s" / "SER.cif").read_text()
                          .replace("SER", "SRX"))
    model = add_riding_hydrogens(read_model(renamed), extra_cifs=[dictionary])
    restraints = build_restraints(model, extra_cifs=[dictionary])
    assert restraints.extra_cifs == (str(dictionary),) and restraints.monlib_dir is None
    moved = model.with_xyz(model.xyz + np.random.default_rng(4).normal(0, 0.1, model.xyz.shape))
    with caplog.at_level(logging.WARNING, logger="varref"):
        placed = ideal_hydrogen_positions(moved, restraints)
    assert not caplog.records
    rebuilt = add_riding_hydrogens(moved, extra_cifs=[dictionary])
    np.testing.assert_array_equal(placed[~model.is_hydrogen], moved.xyz[~model.is_hydrogen])
    assert np.abs(placed[model.is_hydrogen] - moved.xyz[model.is_hydrogen]).max() > 0.1
    at = {(int(r), str(n)): x for r, n, x in
          zip(rebuilt.residue_index, rebuilt.atom_name, rebuilt.xyz)}
    for i in np.flatnonzero(model.is_hydrogen):
        np.testing.assert_allclose(placed[i], at[int(model.residue_index[i]), str(model.atom_name[i])],
                                   atol=1e-3)
    with caplog.at_level(logging.WARNING, logger="varref"):
        unplaced = ideal_hydrogen_positions(moved)  # the default library has no SRX
    assert "keep the model's own positions" in caplog.text
    np.testing.assert_array_equal(unplaced, moved.xyz)
    clashes, _ = clashes_and_topology(moved, restraints=restraints)
    assert clashes["n_atoms"] == model.n_atoms
    with pytest.raises(InputError, match="SRX"):
        clashes_and_topology(moved)
