"""Flat restraint arrays: the contract between the chemistry layer and the engine.

Every array is a plain numpy array indexed by *atom index*, i.e. the row of the atom in
``Model.xyz``. The engine kernels read these arrays and nothing else.

Units
-----
Distances in Å, angles and torsions in **degrees** (as in the CCP4 monomer library),
chiral volumes in Å³. Every restraint carries its own ``sigma``; the engine weights each
residual by ``1 / sigma**2``.

Conventions
-----------
* Bond ``(i, j)``: residual ``|x_j - x_i| - ideal``.
* Angle ``(i, j, k)``: angle at the middle atom ``j``.
* Torsion ``(i, j, k, l)``: dihedral about ``j-k``, IUPAC sign convention; ``period`` n
  means the target is satisfied at ``ideal + m * 360/n``. ``period == 0`` is treated as 1.
* Chirality ``(c, a, b, d)``: signed volume ``V = (a - c) . ((b - c) x (d - c))``;
  ``ideal`` is the signed ideal volume; when ``both_signs`` is True either sign is
  acceptable and the residual is ``|V| - |ideal|``.
* Plane ``p``: atoms ``atoms[offsets[p]:offsets[p+1]]``, each with the plane's ``sigma``;
  the residual of each atom is its distance to the least-squares plane through them all.
* Non-bonded: per-atom van der Waals radius (Å) from the ener_lib energy type,
  hydrogen-bond type code and flags; plus the atom pairs excluded from repulsion
  (1-2 and 1-3 neighbours in the bond graph) and the 1-4 pairs (scaled in the engine).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Hydrogen-bond type codes stored in :attr:`NonbondedParameters.hbond_type`
#: (ener_lib ``hb_type``): neither, donor, acceptor, both, hydrogen.
HBOND_CODES = {"N": 0, "D": 1, "A": 2, "B": 3, "H": 4}


def _empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


@dataclass(frozen=True)
class BondRestraints:
    """Bond-length restraints: ``atoms`` (n, 2) int64, ``ideal`` and ``sigma`` (n,) in Å."""

    atoms: np.ndarray = field(default_factory=lambda: _empty((0, 2), np.int64))
    ideal: np.ndarray = field(default_factory=lambda: _empty((0,), np.float64))
    sigma: np.ndarray = field(default_factory=lambda: _empty((0,), np.float64))

    def __len__(self) -> int:
        return len(self.ideal)


@dataclass(frozen=True)
class AngleRestraints:
    """Bond-angle restraints: ``atoms`` (n, 3), ``ideal`` and ``sigma`` (n,) in degrees."""

    atoms: np.ndarray = field(default_factory=lambda: _empty((0, 3), np.int64))
    ideal: np.ndarray = field(default_factory=lambda: _empty((0,), np.float64))
    sigma: np.ndarray = field(default_factory=lambda: _empty((0,), np.float64))

    def __len__(self) -> int:
        return len(self.ideal)


@dataclass(frozen=True)
class TorsionRestraints:
    """Torsion restraints: ``atoms`` (n, 4), ``ideal``/``sigma`` in degrees, ``period`` int."""

    atoms: np.ndarray = field(default_factory=lambda: _empty((0, 4), np.int64))
    ideal: np.ndarray = field(default_factory=lambda: _empty((0,), np.float64))
    sigma: np.ndarray = field(default_factory=lambda: _empty((0,), np.float64))
    period: np.ndarray = field(default_factory=lambda: _empty((0,), np.int64))

    def __len__(self) -> int:
        return len(self.ideal)


@dataclass(frozen=True)
class ChiralRestraints:
    """Chiral-volume restraints.

    ``atoms`` (n, 4) = (centre, a, b, c); ``ideal`` signed ideal volume (Å³) computed from
    the library's ideal bond lengths and angles; ``sigma`` (Å³); ``both_signs`` bool.
    """

    atoms: np.ndarray = field(default_factory=lambda: _empty((0, 4), np.int64))
    ideal: np.ndarray = field(default_factory=lambda: _empty((0,), np.float64))
    sigma: np.ndarray = field(default_factory=lambda: _empty((0,), np.float64))
    both_signs: np.ndarray = field(default_factory=lambda: _empty((0,), np.bool_))

    def __len__(self) -> int:
        return len(self.ideal)


@dataclass(frozen=True)
class PlaneRestraints:
    """Planarity restraints with variable atom counts (CSR layout).

    ``atoms`` (m,) int64 concatenated atom lists; ``offsets`` (n+1,) int64 so that plane p
    holds ``atoms[offsets[p]:offsets[p+1]]``; ``sigma`` (n,) Å, one per plane.
    """

    atoms: np.ndarray = field(default_factory=lambda: _empty((0,), np.int64))
    offsets: np.ndarray = field(default_factory=lambda: _empty((1,), np.int64))
    sigma: np.ndarray = field(default_factory=lambda: _empty((0,), np.float64))

    def __len__(self) -> int:
        return len(self.sigma)


@dataclass(frozen=True)
class NonbondedParameters:
    """What the non-bonded repulsion needs.

    Per atom (N,): ``vdw_radius`` (Å, ener_lib ``vdw_radius``), ``ion_radius`` (Å, NaN when
    undefined), ``hbond_type`` (int8 codes of :data:`HBOND_CODES`), ``is_hydrogen``.
    Pairs: ``excluded_pairs`` (m, 2) atoms bonded or sharing a bonded neighbour (1-2, 1-3),
    never repelled; ``pairs_14`` (k, 2) atoms three bonds apart, repelled with a scaled
    radius. Both pair arrays hold ``i < j`` and are sorted lexicographically.
    """

    vdw_radius: np.ndarray = field(default_factory=lambda: _empty((0,), np.float64))
    ion_radius: np.ndarray = field(default_factory=lambda: _empty((0,), np.float64))
    hbond_type: np.ndarray = field(default_factory=lambda: _empty((0,), np.int8))
    is_hydrogen: np.ndarray = field(default_factory=lambda: _empty((0,), np.bool_))
    excluded_pairs: np.ndarray = field(default_factory=lambda: _empty((0, 2), np.int64))
    pairs_14: np.ndarray = field(default_factory=lambda: _empty((0, 2), np.int64))


@dataclass(frozen=True)
class Restraints:
    """All geometry restraints of one model topology, as flat arrays.

    Built by :func:`varref.restraints.build_restraints`; shared unchanged by every member of
    an ensemble or series that has the same topology. ``monlib_dir`` and ``extra_cifs`` record
    the dictionaries they came from (None: the default library), so that hydrogens built for
    the same model (riding frames, the clash search) use the same ones.
    """

    n_atoms: int
    bonds: BondRestraints
    angles: AngleRestraints
    torsions: TorsionRestraints
    chirals: ChiralRestraints
    planes: PlaneRestraints
    nonbonded: NonbondedParameters
    monlib_dir: str | None = None
    extra_cifs: tuple[str, ...] = ()

    def counts(self) -> dict[str, int]:
        """Number of restraints of each kind."""
        return {
            "bonds": len(self.bonds),
            "angles": len(self.angles),
            "torsions": len(self.torsions),
            "chirals": len(self.chirals),
            "planes": len(self.planes),
            "nonbonded_excluded_pairs": len(self.nonbonded.excluded_pairs),
            "nonbonded_14_pairs": len(self.nonbonded.pairs_14),
        }
