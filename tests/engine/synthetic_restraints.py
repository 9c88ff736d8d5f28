"""Synthetic restraint sets for the kernels' tests, without the monomer library.

Nothing here is chemistry: atoms are random points and restraints random atom tuples whose
ideal values sit near the current model values, so every term has non-zero residuals and
gradients.
"""

from __future__ import annotations

import numpy as np

from varref.engine.angles import angle_values
from varref.engine.bonds import bond_lengths
from varref.engine.chirals import chiral_volumes
from varref.engine.torsions import torsion_values
from varref.restraints.arrays import (
    AngleRestraints,
    BondRestraints,
    ChiralRestraints,
    NonbondedParameters,
    PlaneRestraints,
    Restraints,
    TorsionRestraints,
)


def _distinct_tuples(rng: np.random.Generator, n_atoms: int, n: int, width: int) -> np.ndarray:
    """n rows of ``width`` distinct atom indices each."""
    rows = np.empty((n, width), dtype=np.int64)
    for r in range(n):
        rows[r] = rng.choice(n_atoms, size=width, replace=False)
    return rows


def _pairs_of(rows: np.ndarray, columns: list[tuple[int, int]]) -> np.ndarray:
    pairs = np.concatenate([rows[:, [a, b]] for a, b in columns]) if len(rows) else \
        np.zeros((0, 2), np.int64)
    pairs = np.sort(pairs, axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


def random_restraints(
    n_atoms: int = 40,
    seed: int = 0,
    box: float = 9.0,
    counts: dict[str, int] | None = None,
    noise: float = 0.3,
) -> tuple[np.ndarray, Restraints]:
    """Random coordinates and a random, fully populated :class:`Restraints`.

    Parameters
    ----------
    n_atoms : int
        Number of atoms (>= 6).
    seed : int
        Seed of the random generator.
    box : float
        Edge (Å) of the cube the atoms are drawn in; ~9 Å for 40 atoms gives many
        non-bonded contacts.
    counts : dict, optional
        Number of ``bonds``, ``angles``, ``torsions``, ``chirals``, ``planes``.
    noise : float
        Ideal values are model values plus ``noise`` times (sigma-scaled) normal noise.

    Returns
    -------
    xyz : (n_atoms, 3) float64
    restraints : Restraints
    """
    rng = np.random.default_rng(seed)
    want = {"bonds": n_atoms, "angles": n_atoms, "torsions": n_atoms // 2,
            "chirals": max(2, n_atoms // 8), "planes": max(2, n_atoms // 10)}
    if counts:
        want.update(counts)
    xyz = rng.uniform(0.0, box, size=(n_atoms, 3))

    bond_atoms = _distinct_tuples(rng, n_atoms, want["bonds"], 2)
    bond_sigma = rng.uniform(0.01, 0.05, len(bond_atoms))
    bond_ideal = bond_lengths(xyz, bond_atoms) + noise * 10 * bond_sigma * rng.standard_normal(
        len(bond_atoms))

    angle_atoms = _distinct_tuples(rng, n_atoms, want["angles"], 3)
    angle_sigma = rng.uniform(1.0, 3.0, len(angle_atoms))
    angle_ideal = angle_values(xyz, angle_atoms) + noise * 10 * angle_sigma * rng.standard_normal(
        len(angle_atoms))

    torsion_atoms = _distinct_tuples(rng, n_atoms, want["torsions"], 4)
    torsion_period = rng.choice([1, 2, 3, 6], size=len(torsion_atoms)).astype(np.int64)
    torsion_sigma = rng.uniform(5.0, 20.0, len(torsion_atoms))
    # ideal anywhere: the periodic residual is what matters
    torsion_ideal = torsion_values(xyz, torsion_atoms) + rng.uniform(
        -170.0, 170.0, len(torsion_atoms)) / torsion_period

    chiral_atoms = _distinct_tuples(rng, n_atoms, want["chirals"], 4)
    volume = chiral_volumes(xyz, chiral_atoms)
    chiral_sigma = np.full(len(chiral_atoms), 0.2)
    chiral_ideal = np.sign(volume) * (np.abs(volume) + 0.5) * np.where(
        rng.random(len(chiral_atoms)) < 0.3, -1.0, 1.0)
    both_signs = rng.random(len(chiral_atoms)) < 0.3

    plane_sizes = rng.integers(4, 8, size=want["planes"])
    plane_atoms = np.concatenate([rng.choice(n_atoms, size=s, replace=False)
                                  for s in plane_sizes]).astype(np.int64) \
        if len(plane_sizes) else np.zeros(0, np.int64)
    plane_offsets = np.concatenate([[0], np.cumsum(plane_sizes)]).astype(np.int64)
    plane_sigma = rng.uniform(0.01, 0.03, len(plane_sizes))

    excluded = np.unique(np.concatenate([
        _pairs_of(bond_atoms, [(0, 1)]), _pairs_of(angle_atoms, [(0, 2)])]), axis=0)
    pairs_14 = _pairs_of(torsion_atoms, [(0, 3)])
    nonbonded = NonbondedParameters(
        vdw_radius=rng.choice([1.52, 1.55, 1.7, 1.8], size=n_atoms),
        ion_radius=np.full(n_atoms, np.nan),
        hbond_type=rng.integers(0, 5, size=n_atoms).astype(np.int8),
        is_hydrogen=np.zeros(n_atoms, bool),
        excluded_pairs=excluded,
        pairs_14=pairs_14,
    )
    restraints = Restraints(
        n_atoms=n_atoms,
        bonds=BondRestraints(bond_atoms, bond_ideal, bond_sigma),
        angles=AngleRestraints(angle_atoms, angle_ideal, angle_sigma),
        torsions=TorsionRestraints(torsion_atoms, torsion_ideal, torsion_sigma, torsion_period),
        chirals=ChiralRestraints(chiral_atoms, chiral_ideal, chiral_sigma, both_signs),
        planes=PlaneRestraints(plane_atoms, plane_offsets, plane_sigma),
        nonbonded=nonbonded,
    )
    return xyz, restraints
