"""Restraints of a subset of atoms, re-indexed: for refining a segment inside a fixed environment."""

from __future__ import annotations

import numpy as np

from varref.restraints.arrays import (
    AngleRestraints,
    BondRestraints,
    ChiralRestraints,
    NonbondedParameters,
    PlaneRestraints,
    Restraints,
    TorsionRestraints,
)


def select_restraints(restraints: Restraints, atoms: np.ndarray) -> Restraints:
    """Restraints among ``atoms`` (sorted unique indices), renumbered 0..len(atoms)-1.

    A restraint is kept when all its atoms are in the subset; a plane keeps its members that
    are in the subset if at least four remain.
    """
    atoms = np.unique(np.asarray(atoms, dtype=np.int64))
    new_index = np.full(restraints.n_atoms, -1, dtype=np.int64)
    new_index[atoms] = np.arange(len(atoms))

    def keep(group_atoms: np.ndarray) -> np.ndarray:
        return np.all(new_index[group_atoms] >= 0, axis=1) if len(group_atoms) else np.zeros(0, bool)

    b, a, t, c = restraints.bonds, restraints.angles, restraints.torsions, restraints.chirals
    kb, ka, kt, kc = keep(b.atoms), keep(a.atoms), keep(t.atoms), keep(c.atoms)
    plane_atoms, offsets, plane_sigma = [], [0], []
    p = restraints.planes
    for k in range(len(p)):
        members = new_index[p.atoms[p.offsets[k]:p.offsets[k + 1]]]
        members = members[members >= 0]
        if len(members) >= 4:
            plane_atoms.extend(members.tolist())
            offsets.append(len(plane_atoms))
            plane_sigma.append(p.sigma[k])
    nb = restraints.nonbonded

    def pairs(pair_array: np.ndarray) -> np.ndarray:
        if len(pair_array) == 0:
            return pair_array
        kept = keep(pair_array)
        return new_index[pair_array[kept]]

    return Restraints(
        n_atoms=len(atoms),
        bonds=BondRestraints(new_index[b.atoms[kb]], b.ideal[kb], b.sigma[kb]),
        angles=AngleRestraints(new_index[a.atoms[ka]], a.ideal[ka], a.sigma[ka]),
        torsions=TorsionRestraints(new_index[t.atoms[kt]], t.ideal[kt], t.sigma[kt], t.period[kt]),
        chirals=ChiralRestraints(new_index[c.atoms[kc]], c.ideal[kc], c.sigma[kc], c.both_signs[kc]),
        planes=PlaneRestraints(np.array(plane_atoms, np.int64), np.array(offsets, np.int64),
                               np.array(plane_sigma, np.float64)),
        nonbonded=NonbondedParameters(
            nb.vdw_radius[atoms], nb.ion_radius[atoms], nb.hbond_type[atoms], nb.is_hydrogen[atoms],
            pairs(nb.excluded_pairs), pairs(nb.pairs_14)),
    )
