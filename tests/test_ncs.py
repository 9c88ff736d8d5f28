"""NCS detection and the torsion-NCS term: groups, copies and correspondences found in the
four-chain TRPV1 model and in models built here (a moved copy of ubiquitin with a deleted
residue and an insertion code; chains of other sequence; a copy that does not superpose);
the shared torsions; the term's gradient, subset and options; and what minimisation with it
does to perturbed side chains."""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from types import SimpleNamespace

import gemmi
import numpy as np
import pytest

from tests.conftest import shared_file
from tests.engine.gradient_check import numerical_gradient
from varref.engine.ncs_torsions import ncs_torsion_spread
from varref.engine.restraint_target import pack_restraints
from varref.engine.torsions import torsion_values
from varref.model import Model, read_model
from varref.refinement.lbfgs import minimise_lbfgs
from varref.refinement.objective import Objective
from varref.refinement.terms import ncs as ncs_term
from varref.refinement.terms.base import Term, TermSetup
from varref.refinement.terms.geometry import GeometryTerm
from varref.restraints import TorsionRestraints, build_restraints
from varref.restraints.ncs import BACKBONE_ATOMS, find_ncs, ncs_torsions
from varref.restraints.reference import proper_torsions

RTOL = 1e-4
TRPV1 = "maps/emd5778_trpv1_tm/3j5p_transmem_4chains_originalframe.pdb"
DELETED = 20  # SER 20, missing from the copy
ICODE = 50  # LEU 50, renumbered 49A in the copy


# --------------------------------------------------------------------------- helpers


def _rotation(axis, angle_deg):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    t = math.radians(angle_deg)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(t) * k + (1 - math.cos(t)) * k @ k


ROTATION = _rotation([1.0, 2.0, -0.5], 70.0)
TRANSLATION = np.array([60.0, -20.0, 15.0])  # far from the original: no contact


def _ubiquitin_chain() -> gemmi.Chain:
    st = gemmi.read_structure(str(shared_file("models/1ubq.pdb")))
    st.remove_ligands_and_waters()
    return st[0]["A"].clone()


def _moved(chain: gemmi.Chain, name: str, rotation=ROTATION, translation=TRANSLATION):
    moved = chain.clone()
    moved.name = name
    for residue in moved:
        for atom in residue:
            p = rotation @ np.array(atom.pos.tolist()) + translation
            atom.pos = gemmi.Position(*p)
    return moved


def _build(chains: list[gemmi.Chain]) -> Model:
    """A Model of the given chains, through PDB text as a file would be read."""
    st = gemmi.Structure()
    st.add_model(gemmi.Model("1"))
    for chain in chains:
        st[0].add_chain(chain)
    st.setup_entities()
    return Model.from_structure(gemmi.read_pdb_string(st.make_pdb_string()), source="built")


def _copy_with_gap_and_icode(chain: gemmi.Chain, name: str = "B") -> gemmi.Chain:
    copy = _moved(chain, name)
    for k in range(len(copy) - 1, -1, -1):
        if copy[k].seqid.num == DELETED:
            del copy[k]
        elif copy[k].seqid.num == ICODE:
            copy[k].seqid = gemmi.SeqId(ICODE - 1, "A")
    return copy


def _renamed(chain: gemmi.Chain, name: str, residues: dict[int, str],
             shift: float) -> gemmi.Chain:
    copy = _moved(chain, name, np.eye(3), np.array([0.0, 0.0, shift]))
    for residue in copy:
        if residue.seqid.num in residues:
            residue.name = residues[residue.seqid.num]
    return copy


@pytest.fixture(scope="module")
def two_copies():
    """1ubq (chain A) and a rotated, translated copy (chain B) lacking SER 20 and with
    LEU 50 numbered 49A."""
    chain = _ubiquitin_chain()
    model = _build([chain, _copy_with_gap_and_icode(chain)])
    restraints = build_restraints(model)
    return model, restraints, pack_restraints(restraints)


@pytest.fixture(scope="module")
def trpv1():
    model = read_model(shared_file(TRPV1))
    return model, build_restraints(model)


def _setup(model, restraints, packed=None, **options):
    return TermSetup(model=model, restraints=restraints, packed=packed, density=None,
                     options=SimpleNamespace(**options), start=model.xyz[np.newaxis].copy())


def _residue(model, chain, number, icode=""):
    return int(model.residue_index[(model.chain_id == chain) & (model.residue_number == number)
                                   & (np.char.strip(model.insertion_code) == icode)][0])




def _rotate_chi1(model, xyz, residue, angle_deg):
    """Turn the atoms beyond CB of model residue ``residue`` about CA→CB (chi1 += angle)."""
    atoms = np.flatnonzero(model.residue_index == residue)
    names = {str(model.atom_name[a]): a for a in atoms}
    beyond = atoms[~np.isin(model.atom_name[atoms], ["N", "CA", "C", "O", "CB", "OXT"])]
    rotation = _rotation(xyz[names["CB"]] - xyz[names["CA"]], angle_deg)
    out = xyz.copy()
    out[beyond] = (xyz[beyond] - xyz[names["CB"]]) @ rotation.T + xyz[names["CB"]]
    return out


def _chi1_restraints(model, term, residue):
    """Indices of the term's restraints that are chi1 of model residue ``residue`` (in any
    copy)."""
    rows = term.atoms
    is_chi1 = np.all(model.atom_name[rows[:, :3]] == ["N", "CA", "CB"], axis=1) \
        & (model.residue_index[rows[:, 1]] == residue)
    copy_restraint = np.repeat(np.arange(len(term)), np.diff(term.offsets))
    return np.unique(copy_restraint[is_chi1])


# --------------------------------------------------------------------------- detection


def test_trpv1_four_chains_form_one_group(trpv1):
    model, _ = trpv1
    groups = find_ncs(model)
    assert len(groups) == 1
    group = groups[0]
    assert group.chains == ["A", "B", "C", "D"]
    ca = (model.atom_name == "CA")
    for copy in group.copies:
        assert copy.n_aligned == 311 and copy.identity == 1.0
        assert copy.rmsd < 0.01 and copy.rmsd_all < 0.01  # the deposited copies are exact
        # the operator maps chain A's Cα onto the copy's
        a = model.xyz[ca & (model.chain_id == "A")]
        c = model.xyz[ca & (model.chain_id == copy.chain)]
        assert np.max(np.linalg.norm(a @ copy.rotation.T + copy.translation - c, axis=1)) < 0.05
    # a C4 channel: the operators turn by 90°, 180° and 90° about one axis
    angles = [math.degrees(math.acos(np.clip((np.trace(c.rotation) - 1) / 2, -1, 1)))
              for c in group.copies]
    assert sorted(np.round(angles)) == [0, 90, 90, 180]
    axes = [np.array([c.rotation[2, 1] - c.rotation[1, 2], c.rotation[0, 2] - c.rotation[2, 0],
                      c.rotation[1, 0] - c.rotation[0, 1]]) for c in group.copies[1:]]
    quarter = [ax / np.linalg.norm(ax) for ax, angle in zip(axes, angles[1:]) if angle < 135]
    assert abs(abs(quarter[0] @ quarter[1]) - 1) < 1e-3
    # every atom of one chain corresponds to the same-named atom of each other chain
    assert group.atoms.shape == (4, 2504) and np.all(group.atoms >= 0)
    for c in range(1, 4):
        np.testing.assert_array_equal(model.atom_name[group.atoms[c]],
                                      model.atom_name[group.atoms[0]])
        np.testing.assert_array_equal(model.residue_number[group.atoms[c]],
                                      model.residue_number[group.atoms[0]])


def test_trpv1_shared_torsions_and_term(trpv1, caplog):
    model, restraints = trpv1
    with caplog.at_level(logging.INFO, logger="varref.refinement.terms.ncs"):
        term = ncs_term.build(_setup(model, restraints))
    assert isinstance(term, Term) and term.name == "ncs" and term.kind == "restraint"
    per_chain = proper_torsions(model, restraints)
    assert len(per_chain) % 4 == 0
    # every torsion of every chain is restrained, in four copies
    assert len(term) == len(per_chain) // 4 and np.all(np.diff(term.offsets) == 4)
    chains = model.chain_id[term.atoms[:, 1]].reshape(-1, 4)
    assert np.all(chains == ["A", "B", "C", "D"])
    # the deposited copies agree up to the rounding of PDB coordinates (0.1° r.m.s.)
    values, _ = term.evaluate(model.xyz[np.newaxis], np.array([0]))
    assert values[0] / len(term) < 0.01  # i.e. (0.25°/σ)² per torsion
    assert np.max(ncs_torsion_spread(model.xyz, term.atoms, term.offsets, term.period)) < 1.0
    text = caplog.text
    assert "4 copies of chain A" in text and "chain D: 311 residues aligned" in text
    assert f"{len(term)} torsions" in text


def test_moved_copy_with_gap_and_insertion_code(two_copies):
    model, restraints, _ = two_copies
    groups = find_ncs(model)
    assert len(groups) == 1 and groups[0].chains == ["A", "B"]
    group = groups[0]
    a, b = group.copies
    assert b.n_aligned == 75 and b.identity == 1.0 and b.rmsd < 1e-3
    # the operator is the rotation + translation that made the copy
    np.testing.assert_allclose(b.rotation, ROTATION, atol=1e-4)
    np.testing.assert_allclose(b.translation, TRANSLATION, atol=1e-3)
    np.testing.assert_allclose(a.rotation, np.eye(3))
    # residue correspondence: slot k is residue k + 1 of A; B lacks 20, has 49A for 50
    first_atoms = np.searchsorted(model.residue_index, b.residues[b.residues >= 0])
    numbers = model.residue_number[first_atoms]
    assert b.residues[DELETED - 1] == -1 and (b.residues >= 0).sum() == 75
    assert b.residues[ICODE - 1] == _residue(model, "B", ICODE - 1, "A")
    assert b.residues[ICODE - 2] == _residue(model, "B", ICODE - 1)
    expected = [n for n in range(1, 77) if n != DELETED]
    expected[expected.index(ICODE)] = ICODE - 1
    assert numbers.tolist() == expected
    np.testing.assert_array_equal(a.residues, [_residue(model, "A", n) for n in range(1, 77)])
    # atoms: same names, B's deleted residue absent
    assert np.all(group.atoms[0] >= 0)
    present = group.atoms[1] >= 0
    np.testing.assert_array_equal(model.atom_name[group.atoms[1, present]],
                                  model.atom_name[group.atoms[0, present]])
    missing = group.atoms[0, ~present]
    assert set(model.residue_number[missing]) == {DELETED}


def test_shared_torsions_of_the_two_copies(two_copies):
    model, restraints, _ = two_copies
    torsions = ncs_torsions(model, find_ncs(model), restraints)
    rows = proper_torsions(model, restraints)
    # expected independently: here numbering matches except LEU 49A (= A's 50), so a
    # torsion is shared when both chains have it with the same names and numbers
    number = np.where(model.insertion_code == "A", ICODE, model.residue_number)

    def keys(chain):
        own = rows[np.all(model.chain_id[rows] == chain, axis=1)]
        return {min(k, k[::-1]) for k in (tuple(zip(number[r], model.atom_name[r]))
                                          for r in own)}

    shared = keys("A") & keys("B")
    assert len(torsions.period) == len(shared)
    # A's SER 20 χ1 and φ, ψ, ω on both sides of it; B's PRO 19, now a C terminus, has
    # N-CA-C-O instead of ψ
    assert len(keys("A") - shared) == 7 and len(keys("B") - shared) == 1
    assert torsions.n_single == len(rows) - 2 * len(shared)
    assert np.all(np.diff(torsions.offsets) == 2)
    a_rows, b_rows = torsions.atoms[0::2], torsions.atoms[1::2]
    assert np.all(model.chain_id[a_rows] == "A") and np.all(model.chain_id[b_rows] == "B")
    np.testing.assert_array_equal(model.atom_name[a_rows], model.atom_name[b_rows])
    b_numbers = np.where(model.insertion_code[b_rows] == "A", ICODE, model.residue_number[b_rows])
    assert np.sum(model.insertion_code[b_rows] == "A") > 10  # LEU 49A's torsions are there
    np.testing.assert_array_equal(model.residue_number[a_rows], b_numbers)
    assert not np.any(model.residue_number[a_rows] == DELETED)
    # the copies are identical up to the rigid motion: every shared torsion agrees
    # (up to the rounding of B's coordinates in the PDB text)
    np.testing.assert_allclose(torsion_values(model.xyz, a_rows), torsion_values(model.xyz, b_rows),
                               atol=0.2)
    # period 2 for the equivalent-atom ends, as the reference restraints
    ends = model.atom_name[a_rows[torsions.period == 2]]
    assert len(ends) and np.all(np.isin(ends[:, [0, 3]], ["OD1", "OD2", "OE1", "OE2", "CD1", "CD2",
                                                          "NH1", "NH2"]).any(axis=1))


def test_chains_of_other_sequence_or_shape_are_not_grouped():
    chain = _ubiquitin_chain()
    crambin = gemmi.read_structure(str(shared_file("models/1crn.pdb")))[0][0].clone()
    crambin.name = "C"
    # 8 of 76 residues renamed: 89.5 % identity; 2 renamed: 97.4 %
    eight = {k: ("TRP" if k % 2 else "HIS") for k in (3, 11, 23, 29, 41, 55, 63, 70)}
    two = {3: "TRP", 41: "HIS"}
    scrambled = _moved(chain, "F", np.eye(3), np.array([0.0, 60.0, 0.0]))
    rng = np.random.default_rng(0)
    centres = [np.array(r["CA"][0].pos.tolist()) for r in scrambled]
    for residue, k in zip(scrambled, rng.permutation(len(centres))):
        shift = centres[k] - np.array(residue["CA"][0].pos.tolist())
        for atom in residue:
            atom.pos = gemmi.Position(*(np.array(atom.pos.tolist()) + shift))
    model = _build([chain, _copy_with_gap_and_icode(chain), crambin,
                    _renamed(chain, "D", eight, -60.0), _renamed(chain, "E", two, -120.0),
                    scrambled])
    groups = find_ncs(model)
    assert [g.chains for g in groups] == [["A", "E", "B"]]
    e = groups[0].copies[1]
    assert e.identity == pytest.approx(74 / 76) and e.rmsd < 1e-3
    # looser thresholds admit the mutant and the scrambled copy; identity 1 drops E
    loose = find_ncs(model, min_identity=0.85, max_rmsd=100.0)
    assert [sorted(g.chains) for g in loose] == [["A", "B", "D", "E", "F"]]
    assert [g.chains for g in find_ncs(model, min_identity=1.0)] == [["A", "B"]]
    # a single chain: no NCS
    assert find_ncs(_build([chain])) == []


def test_partial_copy_needs_most_residues_superposed():
    chain = _ubiquitin_chain()
    # the copy's last 25 residues swung by 90° about CA 51 (a hinge): 51 of 76 Cα (67 %)
    # superpose exactly, and the best-fitting 80 % (61) only at 3.1 Å
    swung = _moved(chain, "B")
    hinge = np.array(next(r for r in swung if r.seqid.num == 51)["CA"][0].pos.tolist())
    turn = _rotation([0.3, 1.0, 0.2], 90.0)
    for residue in swung:
        if residue.seqid.num > 51:
            for atom in residue:
                atom.pos = gemmi.Position(*(turn @ (np.array(atom.pos.tolist()) - hinge) + hinge))
    model = _build([chain, swung])
    assert find_ncs(model) == []
    groups = find_ncs(model, min_fraction=0.6)
    assert [g.chains for g in groups] == [["A", "B"]]
    assert groups[0].copies[1].rmsd < 0.01 < 2.0 < groups[0].copies[1].rmsd_all
    # a copy with only residues 1-60 built is a copy (all its residues superpose)
    short = _moved(chain, "B")
    for k in range(len(short) - 1, -1, -1):
        if short[k].seqid.num > 60:
            del short[k]
    groups = find_ncs(_build([chain, short]))
    assert [g.chains for g in groups] == [["A", "B"]] and groups[0].copies[1].n_aligned == 60


# --------------------------------------------------------------------------- term


def test_term_gradient_matches_finite_differences(two_copies):
    model, restraints, packed = two_copies
    term = ncs_term.build(_setup(model, restraints, packed))
    xyz = model.xyz + np.random.default_rng(6).normal(scale=0.15, size=model.xyz.shape)
    spread = ncs_torsion_spread(xyz, term.atoms, term.offsets, term.period)
    assert np.sum(spread < 5) > 20 and np.sum((spread > 15) & (spread < 40)) > 20
    _, analytic = term.evaluate(xyz[np.newaxis], np.array([0]))
    numeric = numerical_gradient(lambda x: term.evaluate(x[np.newaxis], np.array([0]))[0][0], xyz)
    scale = np.max(np.abs(numeric))
    assert scale > 0
    assert np.max(np.abs(analytic[0] - numeric)) <= RTOL * scale


def test_term_build_options(two_copies, caplog):
    model, restraints, packed = two_copies
    assert ncs_term.build(_setup(model, restraints, packed, ncs=False)) is None
    default = ncs_term.build(_setup(model, restraints, packed))  # no ``ncs`` option: on
    assert (default.sigma, default.limit) == (2.5, 15.0)  # Phenix torsion-NCS defaults
    tuned = ncs_term.build(_setup(model, restraints, packed, ncs=True, ncs_sigma=5.0,
                                  ncs_limit=30.0))
    assert (tuned.sigma, tuned.limit) == (5.0, 30.0)
    np.testing.assert_array_equal(tuned.atoms, default.atoms)
    # detection reads setup.model only: other starting coordinates change nothing
    setup = _setup(model, restraints, packed)
    setup.start = np.repeat(model.xyz[np.newaxis] + 5.0, 3, axis=0)
    np.testing.assert_array_equal(ncs_term.build(setup).atoms, default.atoms)
    single = _build([_ubiquitin_chain()])
    with caplog.at_level(logging.INFO, logger="varref.refinement.terms.ncs"):
        assert ncs_term.build(_setup(single, build_restraints(single))) is None
    assert "no NCS copies" in caplog.text
    with pytest.raises(ValueError, match="sigma"):
        ncs_term.NcsTerm(model.n_atoms, default.atoms, default.offsets, default.period, 0.0)
    with pytest.raises(ValueError, match="offsets"):
        ncs_term.NcsTerm(model.n_atoms, default.atoms, default.offsets[:-1], default.period[:-1])


def test_term_subset(two_copies):
    model, restraints, packed = two_copies
    term = ncs_term.build(_setup(model, restraints, packed))
    residues = [_residue(model, c, n) for c in "AB" for n in (30, 31, 32)] + \
        [_residue(model, "A", 33)]  # residue 33 of A only: its restraints drop out
    atoms = np.flatnonzero(np.isin(model.residue_index, residues))
    part = term.subset(atoms)
    copy_inside = np.all(np.isin(term.atoms, atoms), axis=1)
    counts = np.diff(term.offsets)
    inside = np.add.reduceat(copy_inside, term.offsets[:-1]) == counts
    assert len(part) == inside.sum() > 0
    assert (copy_inside.sum() - 2 * inside.sum()) > 0  # some restraints only half inside
    rows = np.repeat(inside, counts)
    full_inside = ncs_term.NcsTerm(model.n_atoms, term.atoms[rows],
                                   np.concatenate([[0], np.cumsum(counts[inside])]),
                                   term.period[inside])
    xyz = model.xyz + np.random.default_rng(9).normal(scale=0.3, size=model.xyz.shape)
    expected = full_inside.evaluate(xyz[np.newaxis], np.array([0]))[0]
    assert part.evaluate(xyz[atoms][np.newaxis], np.array([0]))[0] == pytest.approx(expected)
    assert expected[0] > 0
    # any number of problems
    values, grad = part.evaluate(np.repeat(xyz[atoms][np.newaxis], 3, axis=0), np.arange(3))
    assert values.shape == (3,) and grad.shape == (3, len(atoms), 3)
    assert term.subset(np.flatnonzero(model.chain_id == "A")) is None


def _without_side_chain_torsions(model, restraints):
    """The restraints without the library's side-chain torsions (χ), so that only the NCS
    term decides the side chains' conformations (as a map would)."""
    t = restraints.torsions
    side = ~np.all(np.isin(model.atom_name[t.atoms], list(BACKBONE_ATOMS)), axis=1)
    assert side.sum() > 100
    return replace(restraints, torsions=TorsionRestraints(t.atoms[~side], t.ideal[~side],
                                                          t.sigma[~side], t.period[~side]))


def _chi1_difference(model, term, xyz, number):
    """chi1 of residue ``number`` in copy B minus copy A, degrees in [−180, 180)."""
    r = _chi1_restraints(model, term, _residue(model, "A", number))
    assert len(r) == 1
    phi = torsion_values(xyz, term.atoms[term.offsets[r[0]]:term.offsets[r[0] + 1]])
    return float((phi[1] - phi[0] + 180.0) % 360.0 - 180.0)


def _minimise(restraints, start, terms, iterations=300):
    objective = Objective([GeometryTerm(restraints), *terms], [0.0], start[np.newaxis])
    result = minimise_lbfgs(objective, objective.pack(objective.start), max_iterations=iterations)
    return objective.unpack(result.x, np.array([0]))[0]


def test_minimisation_brings_perturbed_side_chains_together(two_copies):
    model, restraints, packed = two_copies
    term = ncs_term.build(_setup(model, restraints, packed))
    # chi1 of eight side chains of copy B turned by ±20°
    small = {3: 20.0, 6: -20.0, 11: 20.0, 27: -20.0, 33: 20.0, 42: -20.0, 48: 20.0, 63: -20.0}
    start = model.xyz.copy()
    for number, angle in small.items():
        start = _rotate_chi1(model, start, _residue(model, "B", number), angle)
    for number, angle in small.items():  # (the PDB text rounds B's coordinates)
        assert _chi1_difference(model, term, start, number) == pytest.approx(angle, abs=0.1)
    # without the library's χ restraints only the NCS term can restore the side chains
    geometry = _without_side_chain_torsions(model, restraints)
    with_ncs = _minimise(geometry, start, [term])
    without = _minimise(geometry, start, [])
    after = np.array([_chi1_difference(model, term, with_ncs, n) for n in small])
    after_without = np.array([_chi1_difference(model, term, without, n) for n in small])
    rms, rms_without = np.sqrt(np.mean(after**2)), np.sqrt(np.mean(after_without**2))
    print(f"chi1 difference between the copies, r.m.s.: 20.0 deg at the start, {rms:.2f} deg "
          f"after geometry + NCS, {rms_without:.2f} deg after geometry alone")
    assert rms < 2.0 and rms_without > 10.0


def test_minimisation_leaves_a_real_difference_alone(two_copies):
    # copy B's GLN 62 turned by 90°: the full geometry (its library χ restraint) takes it to
    # another staggered rotamer, with or without the NCS term, which barely resists
    model, restraints, packed = two_copies
    term = ncs_term.build(_setup(model, restraints, packed))
    start = _rotate_chi1(model, model.xyz, _residue(model, "B", 62), 90.0)
    with_ncs = _minimise(restraints, start, [term])
    without = _minimise(restraints, start, [])
    big, big_without = (_chi1_difference(model, term, x, 62) for x in (with_ncs, without))
    print(f"a 90 deg chi1 difference ends at {big:.2f} deg with NCS, {big_without:.2f} deg "
          f"without")
    assert abs(big) > 75.0 and abs(big - big_without) < 2.0
    # while a 20° difference of the same side chain is brought back (here the library's χ
    # restraint also pulls it back; NCS makes it closer)
    start = _rotate_chi1(model, model.xyz, _residue(model, "B", 62), 20.0)
    assert abs(_chi1_difference(model, term, _minimise(restraints, start, [term]), 62)) < \
        abs(_chi1_difference(model, term, _minimise(restraints, start, []), 62))
