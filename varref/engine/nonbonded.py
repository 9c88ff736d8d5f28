"""Non-bonded repulsion (PROLSQ-style, as in cctbx/Phenix) and the contact-distance rule.

Energy of one pair at distance d with contact distance r0:

    E(d) = c_rep * (r0 - d)^4   if d < r0,   else 0

(cctbx ``prolsq_repulsion_function`` with irexp = 1, rexp = 4). ``c_rep`` plays the role
of the weight (Phenix: 100 when no ``nonbonded_weight`` is given); there is no 1/sigma^2.

The contact distance of a pair (computed once per neighbour-list build, see
:mod:`varref.engine.neighbours`) follows cctbx ``nonbonded_params``:

1. ``r = R_i + R_j`` with R the ener_lib ``vdw_radius`` (the ionic radius for free ions,
   see :func:`effective_radii`); if either radius is unknown (NaN) ``r = default_distance``.
2. Donor/acceptor pairs (hb codes D-A, D-B, A-B, B-B, A-H, B-H; H = polar hydrogen)
   ``r -= shrink_donor_acceptor`` (Phenix ``const_shrink_donor_acceptor`` = 0.6 Å), so
   hydrogen-bonded N/O pairs may approach ~2.5-2.6 Å without penalty.
3. ``r = max(minimum_distance, r)``.
4. 1-4 pairs (three bonds apart): ``r = max(minimum_distance, factor_1_4 * r)``
   (Phenix ``vdw_1_4_factor`` = 0.8).
5. ``r0 = k_rep * r``.

1-2 and 1-3 pairs are never repelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

HB_NEITHER = 0
HB_DONOR = 1
HB_ACCEPTOR = 2
HB_BOTH = 3
HB_HYDROGEN = 4


@dataclass(frozen=True)
class NonbondedSettings:
    """Parameters of the repulsion term (defaults: Phenix real_space_refine).

    Attributes
    ----------
    c_rep : float
        Energy scale of ``c_rep (r0 - d)^4`` (Å^-4); Phenix uses 100 when
        ``nonbonded_weight`` is not set (cctbx's own default is 16).
    k_rep : float
        Multiplier on the contact distance.
    factor_1_4 : float
        Scale of the contact distance for 1-4 pairs (Phenix ``vdw_1_4_factor``).
    shrink_donor_acceptor : float
        Å subtracted from the contact distance of H-bonding pairs.
    minimum_distance : float
        Lower bound of any contact distance (Phenix ``min_vdw_distance``).
    default_distance : float
        Contact distance used when a radius is unknown (Phenix ``default_vdw_distance``).
    buffer : float
        Neighbour-list skin (Å, Phenix ``nonbonded_buffer``): pairs up to ``r0 + buffer``
        are listed, and the list is rebuilt once any atom has moved more than buffer/2.
    """

    c_rep: float = 100.0
    k_rep: float = 1.0
    factor_1_4: float = 0.8
    shrink_donor_acceptor: float = 0.6
    minimum_distance: float = 1.0
    default_distance: float = 1.0
    buffer: float = 1.0

    def __post_init__(self) -> None:
        # the neighbour search bounds r0 by k_rep * max(R_i + R_j, floors), which holds
        # only if 1-4 scaling and the H-bond shrink never lengthen a contact
        if not (self.c_rep >= 0 and self.k_rep > 0 and 0 < self.factor_1_4 <= 1
                and self.shrink_donor_acceptor >= 0 and self.minimum_distance >= 0
                and self.default_distance >= 0 and self.buffer >= 0):
            raise ValueError(f"invalid non-bonded settings: {self}")


def effective_radii(
    vdw_radius: np.ndarray,
    ion_radius: np.ndarray,
    hbond_type: np.ndarray,
    is_hydrogen: np.ndarray,
    bonded: np.ndarray,
) -> np.ndarray:
    """Per-atom repulsion radius: the vdW radius, or the ionic radius for free ions.

    An atom counts as a free ion when it has no covalent bond in the restraints, has a
    finite ``ion_radius``, is not a hydrogen and is neither H-bond donor nor acceptor
    (this keeps water oxygen, type OH2, on its vdW radius). cctbx switches to the ionic
    radius for atoms with a formal charge; the restraint arrays carry no charge, so
    this rule stands in for it (metal ions are single-atom residues without bonds).

    Parameters
    ----------
    vdw_radius, ion_radius : (N,) float64
    hbond_type : (N,) int
    is_hydrogen, bonded : (N,) bool

    Returns
    -------
    (N,) float64
    """
    radius = np.asarray(vdw_radius, dtype=np.float64).copy()
    ion = np.asarray(ion_radius, dtype=np.float64)
    is_ion = (~np.asarray(bonded, bool)) & np.isfinite(ion) & (~np.asarray(is_hydrogen, bool))
    is_ion &= np.asarray(hbond_type) == HB_NEITHER
    radius[is_ion] = ion[is_ion]
    return radius


@njit(nogil=True, cache=True)
def is_donor_acceptor_pair(type_i: int, type_j: int) -> bool:
    """True for the hb-type combinations that cctbx shrinks (see module docstring)."""
    lo = min(type_i, type_j)
    hi = max(type_i, type_j)
    if lo == HB_DONOR:
        return hi == HB_ACCEPTOR or hi == HB_BOTH
    if lo == HB_ACCEPTOR:
        return hi == HB_BOTH or hi == HB_HYDROGEN
    if lo == HB_BOTH:
        return hi == HB_BOTH or hi == HB_HYDROGEN
    return False


@njit(nogil=True, cache=True)
def contact_distance(
    radius_i: float,
    radius_j: float,
    type_i: int,
    type_j: int,
    is_14: bool,
    k_rep: float,
    factor_1_4: float,
    shrink_donor_acceptor: float,
    minimum_distance: float,
    default_distance: float,
) -> float:
    """Contact distance r0 of one pair, by the rule of the module docstring."""
    if math.isnan(radius_i) or math.isnan(radius_j):
        r = default_distance
    else:
        r = radius_i + radius_j
        if is_donor_acceptor_pair(type_i, type_j):
            r -= shrink_donor_acceptor
    r = max(minimum_distance, r)
    if is_14:
        r = max(minimum_distance, factor_1_4 * r)
    return k_rep * r


@njit(nogil=True, cache=True)
def nonbonded_value_and_gradient(
    xyz: np.ndarray, pairs: np.ndarray, contact: np.ndarray, c_rep: float, grad: np.ndarray
) -> float:
    """Repulsion ``T = sum_p c_rep (r0_p - d_p)^4 [d_p < r0_p]`` and its gradient.

    Parameters
    ----------
    xyz : (N, 3) float64
    pairs : (P, 2) int64
        Candidate pairs from the neighbour list (pairs beyond r0 cost one distance).
    contact : (P,) float64
        Contact distance r0 of each pair (Å).
    c_rep : float
        Energy scale.
    grad : (N, 3) float64
        Gradient buffer; dT/dxyz is added to it.

    Returns
    -------
    float
        The target value T.
    """
    total = 0.0
    for p in range(pairs.shape[0]):
        i = pairs[p, 0]
        j = pairs[p, 1]
        dx = xyz[j, 0] - xyz[i, 0]
        dy = xyz[j, 1] - xyz[i, 1]
        dz = xyz[j, 2] - xyz[i, 2]
        d2 = dx * dx + dy * dy + dz * dz
        r0 = contact[p]
        if d2 >= r0 * r0:
            continue
        d = math.sqrt(d2)
        t = r0 - d
        t2 = t * t
        total += c_rep * t2 * t2
        if d > 0.0:
            f = -4.0 * c_rep * t2 * t / d  # dE/dd / d
            grad[j, 0] += f * dx
            grad[j, 1] += f * dy
            grad[j, 2] += f * dz
            grad[i, 0] -= f * dx
            grad[i, 1] -= f * dy
            grad[i, 2] -= f * dz
    return total


@dataclass(frozen=True)
class NonbondedTopology:
    """Per-atom repulsion data and the 1-2/1-3/1-4 pair table, packed for the kernels.

    Attributes
    ----------
    radius : (N,) float64
        Repulsion radius of each atom (Å; NaN = unknown), see :func:`effective_radii`.
    hbond_type : (N,) int8
        ener_lib H-bond codes (0 neither, 1 donor, 2 acceptor, 3 both, 4 polar H).
    partner_offsets : (N + 1,) int64
        CSR index: atom i's special partners j > i are
        ``partners[partner_offsets[i]:partner_offsets[i+1]]``.
    partners : (m,) int64
    partner_kind : (m,) int8
        1 = excluded (1-2 or 1-3), 2 = 1-4 pair (scaled contact distance). A pair that is
        both (e.g. across a ring) is excluded.
    """

    radius: np.ndarray
    hbond_type: np.ndarray
    partner_offsets: np.ndarray
    partners: np.ndarray
    partner_kind: np.ndarray


KIND_EXCLUDED = 1
KIND_14 = 2


def build_nonbonded_topology(
    n_atoms: int,
    vdw_radius: np.ndarray,
    ion_radius: np.ndarray,
    hbond_type: np.ndarray,
    is_hydrogen: np.ndarray,
    excluded_pairs: np.ndarray,
    pairs_14: np.ndarray,
    bond_atoms: np.ndarray,
) -> NonbondedTopology:
    """Pack the non-bonded parameters (one call per topology, numpy only).

    Parameters
    ----------
    n_atoms : int
    vdw_radius, ion_radius : (N,) float64
    hbond_type : (N,) int
    is_hydrogen : (N,) bool
    excluded_pairs, pairs_14 : (m, 2) int64
        Atom pairs, any order within a pair.
    bond_atoms : (n_bonds, 2) int64
        Used only to recognise free ions (atoms without bonds).

    Returns
    -------
    NonbondedTopology
    """
    bonded = np.zeros(n_atoms, dtype=bool)
    bond_atoms = np.asarray(bond_atoms, dtype=np.int64).reshape(-1, 2)
    bonded[bond_atoms.ravel()] = True
    radius = effective_radii(vdw_radius, ion_radius, hbond_type, is_hydrogen, bonded)
    excluded = np.asarray(excluded_pairs, dtype=np.int64).reshape(-1, 2)
    one_four = np.asarray(pairs_14, dtype=np.int64).reshape(-1, 2)
    both = np.concatenate([excluded, one_four])
    kind = np.concatenate([np.full(len(excluded), KIND_EXCLUDED, np.int8),
                           np.full(len(one_four), KIND_14, np.int8)])
    lo = np.minimum(both[:, 0], both[:, 1])
    hi = np.maximum(both[:, 0], both[:, 1])
    keep = lo != hi
    lo, hi, kind = lo[keep], hi[keep], kind[keep]
    # sort by (lo, hi, kind) and keep the first of duplicates: exclusion (1) beats 1-4 (2)
    order = np.lexsort((kind, hi, lo))
    lo, hi, kind = lo[order], hi[order], kind[order]
    first = np.ones(len(lo), dtype=bool)
    first[1:] = (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])
    lo, hi, kind = lo[first], hi[first], kind[first]
    offsets = np.zeros(n_atoms + 1, dtype=np.int64)
    np.cumsum(np.bincount(lo, minlength=n_atoms), out=offsets[1:])
    return NonbondedTopology(
        radius=np.ascontiguousarray(radius, dtype=np.float64),
        hbond_type=np.ascontiguousarray(hbond_type, dtype=np.int8),
        partner_offsets=offsets,
        partners=np.ascontiguousarray(hi, dtype=np.int64),
        partner_kind=np.ascontiguousarray(kind, dtype=np.int8),
    )
