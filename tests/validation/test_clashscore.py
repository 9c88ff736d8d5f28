"""All-atom clashscore with riding hydrogens."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from varref.validation.clashes import CLASH_OVERLAP, add_riding_hydrogens, find_clashes


def test_hydrogens_are_added_at_riding_positions(read_shared_model):
    model = read_shared_model("1crn")
    full = add_riding_hydrogens(model)
    added = full.is_hydrogen & ~full.is_water
    assert added.sum() == full.n_atoms - model.n_atoms > 250
    # every hydrogen sits at an X-H distance (0.82 Å for O-H to 1.0 Å for N-H, X-ray values)
    heavy = cKDTree(full.xyz[~full.is_hydrogen])
    distance, _ = heavy.query(full.xyz[added])
    assert np.all((distance > 0.8) & (distance < 1.15))
    assert full.n_residues == model.n_residues


def _closest_carbon_pair(model):
    """Two carbons of residues at least 3 apart in sequence, as close as any such pair
    (cysteines left out: across a disulfide CB-SG-SG-CB is a bonded 1-4 pair)."""
    carbons = np.flatnonzero((model.element == "C") & (model.residue_name != "CYS"))
    pairs = cKDTree(model.xyz[carbons]).query_pairs(4.5, output_type="ndarray")
    i, j = carbons[pairs[:, 0]], carbons[pairs[:, 1]]
    far = np.abs(model.residue_index[i] - model.residue_index[j]) >= 3
    i, j = i[far], j[far]
    k = int(np.argmin(np.linalg.norm(model.xyz[i] - model.xyz[j], axis=1)))
    return int(i[k]), int(j[k])


def test_two_atoms_pushed_together_make_a_clash(read_shared_model):
    model = read_shared_model("1crn")
    before = find_clashes(model)
    a, b = _closest_carbon_pair(model)
    xyz = model.xyz.copy()
    direction = (xyz[b] - xyz[a]) / np.linalg.norm(xyz[b] - xyz[a])
    xyz[b] = xyz[a] + 2.9 * direction  # carbon radii 1.75 + 1.75: overlap 0.6 Å
    after = find_clashes(model.with_xyz(xyz))
    labels = {model_label for model_label in (f"{model.chain_id[k]}/{model.residue_name[k]} "
                                              f"{model.residue_number[k]} {model.atom_name[k]}"
                                              for k in (a, b))}
    pushed = [c for c in after["clashes"] if {c["atom_1"], c["atom_2"]} == labels]
    assert len(pushed) == 1
    assert pushed[0]["overlap"] >= CLASH_OVERLAP
    assert pushed[0]["distance"] == pytest.approx(2.9, abs=1e-6)
    assert after["n_clashes"] > before["n_clashes"]
    assert after["clashscore"] > before["clashscore"]


def test_clashscore_counts_per_thousand_atoms_with_hydrogens(read_shared_model):
    result = find_clashes(read_shared_model("1crn"))
    assert result["clashscore"] == pytest.approx(1000.0 * result["n_clashes"] / result["n_atoms"])
    assert all(c["overlap"] >= CLASH_OVERLAP for c in result["clashes"])
    overlaps = [c["overlap"] for c in result["clashes"]]
    assert overlaps == sorted(overlaps, reverse=True)


def test_clashscore_ranks_a_poor_early_cryoem_model_last(read_shared_model):
    # 3J5P (TRPV1, 2013, 3.4 Å), one of the first near-atomic cryo-EM models, has many
    # rotamer outliers and poor packing; crambin (1.5 Å X-ray) and 6OUT (2.6 Å cryo-EM,
    # built and refined with current tools) are well packed
    crambin = find_clashes(read_shared_model("1crn"))["clashscore"]
    modern = find_clashes(read_shared_model("6out"))["clashscore"]
    trpv1 = find_clashes(read_shared_model("trpv1_tm"))["clashscore"]
    assert trpv1 > 5 * max(crambin, modern)
    assert crambin < 10 and modern < 20


def test_clashscore_of_a_model_over_32767_atoms_with_hydrogens():
    from conftest import SHARED_DATA

    from varref.model import read_model

    path = SHARED_DATA / "maps" / "emd1997_groel_unfitted" / "1oel.pdb"
    if not path.is_file():
        pytest.skip("shared data not available: 1oel.pdb")
    result = find_clashes(read_model(path))
    assert result["n_atoms"] > 32767
    assert 0.0 <= result["clashscore"] < 100.0


def test_probe_radii_follow_the_element_and_the_bonded_neighbours(read_shared_model):
    """Probe radii of a hydrogenated protein against their definition atom by atom: polar
    hydrogens (on N/O) and aromatic ones (on ring carbons) 1.05 Å, other hydrogens 1.22 Å,
    carbonyl/carboxyl carbons (bonded to an oxygen with no other bond) 1.70 Å, other atoms
    by element."""
    from varref.restraints import build_restraints
    from varref.validation.clashes import (AROMATIC_CARBONS, CARBONYL_CARBON_RADIUS,
                                           HYDROGEN_RADIUS, POLAR_OR_AROMATIC_HYDROGEN_RADIUS,
                                           PROBE_RADII, probe_radii)

    model = add_riding_hydrogens(read_shared_model("trpv1_tm"))
    bonds = build_restraints(model).bonds.atoms
    radius, polar = probe_radii(model, bonds)
    neighbours = [[] for _ in range(model.n_atoms)]
    for i, j in bonds.tolist():
        neighbours[i].append(j)
        neighbours[j].append(i)
    element = [str(e).upper() for e in model.element]
    kinds = set()
    for i in range(model.n_atoms):
        if element[i] == "H":
            p = neighbours[i][0]
            on_ring = element[p] == "C" and model.atom_name[p] in AROMATIC_CARBONS.get(
                str(model.residue_name[p]), ())
            assert polar[i] == (element[p] in ("N", "O"))
            expected = POLAR_OR_AROMATIC_HYDROGEN_RADIUS if polar[i] or on_ring else HYDROGEN_RADIUS
            kinds.add(("H", polar[i], on_ring))
        elif element[i] == "C" and any(element[j] == "O" and len(neighbours[j]) == 1
                                       for j in neighbours[i]):
            expected = CARBONYL_CARBON_RADIUS
            kinds.add("C=O")
        else:
            assert not polar[i]
            expected = PROBE_RADII[element[i]]
        assert radius[i] == expected, (i, model.atom_name[i], model.residue_name[i])
    # every kind occurs in the model
    assert kinds >= {("H", True, False), ("H", False, True), ("H", False, False), "C=O"}


def test_a_model_with_its_hydrogens_reuses_given_restraints_for_the_topology(read_shared_model,
                                                                             monkeypatch):
    """A model that carries all its hydrogens has the hydrogen-complete model's atoms: the
    clash search takes its bond graph from given restraints (a refinement's) instead of
    building them, with the same result; a model without hydrogens builds its own."""
    from varref.restraints import build_restraints
    from varref.validation import clashes as clashes_module

    with_h = add_riding_hydrogens(read_shared_model("1crn"))
    restraints = build_restraints(with_h)
    xyz = with_h.xyz + np.random.default_rng(2).normal(0, 0.2, with_h.xyz.shape)
    moved = with_h.with_xyz(xyz)
    expected, _ = clashes_module.clashes_and_topology(moved)
    built = []
    original = clashes_module.build_restraints
    monkeypatch.setattr(clashes_module, "build_restraints",
                        lambda *a, **k: built.append(1) or original(*a, **k))
    reused, _ = clashes_module.clashes_and_topology(moved, restraints=restraints)
    assert built == [] and reused == expected and reused["n_clashes"] > 0


TOPOLOGY_FIELDS = ("atom_names", "radius", "polar_hydrogen", "acceptor", "donor", "parent",
                   "bonded_keys")


@pytest.mark.parametrize("name", ["1crn", "1ubq", "3j6b_9", "trpv1_tm"])
def test_rebuilt_hydrogens_take_the_topology_from_the_heavy_atoms_restraints(
        read_shared_model, monkeypatch, name):
    """Without its hydrogens (or with others) a model's restraints still hold every heavy-atom
    bond and H-bond type of the hydrogen-complete model: its clash topology, derived from them
    and the dictionaries' hydrogen parents, equals the one built from scratch, field by
    field, and the clash search then builds nothing."""
    from varref.restraints import build_restraints
    from varref.validation import clashes as clashes_module

    model = read_shared_model(name)
    restraints = build_restraints(model)
    full = add_riding_hydrogens(model)
    built = clashes_module._topology_of(full, build_restraints(full))
    derived = clashes_module._topology_from_heavy_atoms(full, model, restraints, (None, ()))
    assert derived is not None
    for field in TOPOLOGY_FIELDS:
        assert np.array_equal(getattr(derived, field), getattr(built, field)), field
    assert derived.parent[full.is_hydrogen].min() >= 0
    calls = []
    original = clashes_module.build_restraints
    monkeypatch.setattr(clashes_module, "build_restraints",
                        lambda *a, **k: calls.append(1) or original(*a, **k))
    reused, topology = clashes_module.clashes_and_topology(model, restraints=restraints)
    assert calls == []
    assert reused == clashes_module.clashes_and_topology(model, topology=built)[0]


def test_the_topology_is_built_when_the_heavy_atoms_cannot_vouch_for_it(read_shared_model):
    """Heavy atoms that do not match one to one, or a heavy atom the dictionary lacks (tied to
    its nearest atom, which may be a new hydrogen), leave the derivation undecided: None, and
    the clash search builds the restraints of the hydrogen-complete model."""
    from dataclasses import replace

    from varref.restraints import build_restraints
    from varref.validation import clashes as clashes_module

    model = read_shared_model("1crn")
    restraints = build_restraints(model)
    full = add_riding_hydrogens(model)
    derive = clashes_module._topology_from_heavy_atoms
    assert derive(full, model, restraints, (None, ())) is not None
    # two atoms of one residue under one name (as alternative conformations would be)
    names = model.atom_name.copy()
    first = np.flatnonzero(model.residue_index == 3)
    names[first[2]] = names[first[1]]
    assert derive(full, replace(model, atom_name=names), restraints, (None, ())) is None
    # a heavy atom outside its residue's dictionary
    names = full.atom_name.copy()
    carbon = np.flatnonzero((full.residue_name == "THR") & (full.atom_name == "CG2"))[0]
    names[carbon] = "CZ9"
    renamed = replace(full, atom_name=names)
    heavy_names = model.atom_name.copy()
    heavy_names[np.flatnonzero((model.residue_index == full.residue_index[carbon])
                               & (model.atom_name == "CG2"))[0]] = "CZ9"
    assert derive(renamed, replace(model, atom_name=heavy_names), restraints, (None, ())) is None
    # a hydrogen that is not near its dictionary parent
    xyz = full.xyz.copy()
    xyz[np.flatnonzero(full.is_hydrogen)[5]] += 3.0
    assert derive(full.with_xyz(xyz), model, restraints, (None, ())) is None
