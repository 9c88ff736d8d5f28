"""Bond-graph facts shared by the restraints, the clash search and the B-factor stage."""

from __future__ import annotations

import numpy as np

from varref.model import read_model
from varref.restraints import build_restraints
from varref.restraints.graph import hydrogen_parents, pair_keys
from varref.validation.clashes import add_riding_hydrogens


def test_a_hydrogen_rides_on_its_first_bonded_heavy_atom():
    # atoms: C0 H1 H2 N3 H4 O5; H1 is bonded to H2, then N3, then C0; H4 has no bond
    is_hydrogen = np.array([False, True, True, False, True, False])
    bonds = np.array([[1, 2], [3, 1], [0, 1], [0, 2], [5, 0]])
    assert hydrogen_parents(is_hydrogen, bonds).tolist() == [-1, 3, 0, -1, -1, -1]
    assert hydrogen_parents(is_hydrogen, np.zeros((0, 2), np.int64)).tolist() == [-1] * 6


def test_every_added_hydrogen_rides_on_its_one_bonded_atom(shared):
    model = add_riding_hydrogens(read_model(shared("models/1crn.pdb")))
    bonds = build_restraints(model).bonds.atoms
    parent = hydrogen_parents(model.is_hydrogen, bonds)
    hydrogens = np.flatnonzero(model.is_hydrogen)
    assert len(hydrogens) > 250
    for h in hydrogens:
        partners = bonds[bonds[:, 0] == h, 1].tolist() + bonds[bonds[:, 1] == h, 0].tolist()
        assert partners == [parent[h]]
    assert np.all(parent[~model.is_hydrogen] == -1)


def test_pair_keys_ignore_order_and_tell_pairs_apart():
    n = 7
    pairs = np.array([(i, j) for i in range(n) for j in range(i, n)])
    keys = pair_keys(pairs, n)
    assert len(np.unique(keys)) == len(pairs)
    assert np.array_equal(pair_keys(pairs[:, ::-1], n), keys)
