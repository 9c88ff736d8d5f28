"""Total geometry-restraint target of one model or a batch of models.

``T_restraints = T_bond + T_angle + T_torsion + T_chiral + T_plane + T_nonbonded`` where
each covalent term is ``sum (residual / sigma)^2`` and the non-bonded term is the PROLSQ
repulsion (see the term modules). Usage::

    packed = pack_restraints(restraints)          # once per topology
    nbl = packed.neighbour_list()                  # state: pair list + rebuild check
    value, grad = restraint_value_and_gradient(xyz, packed, nbl.update(xyz))

The restraint arrays are packed once into one :class:`KernelArrays` of contiguous typed
arrays (with 1/sigma^2 precomputed and indices validated, since the kernels do no bounds
checks); evaluation is then a single numba call for all terms, also for a batch of K models
(loop over K inside numba).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from numba import njit

from varref.engine.angles import angle_value_and_gradient
from varref.engine.bonds import bond_value_and_gradient
from varref.engine.chirals import chiral_value_and_gradient
from varref.engine.neighbours import (
    BatchNeighbourList,
    BatchNonbondedPairs,
    NeighbourList,
    NonbondedPairs,
)
from varref.engine.nonbonded import (
    NonbondedSettings,
    NonbondedTopology,
    build_nonbonded_topology,
    nonbonded_value_and_gradient,
)
from varref.engine.planes import plane_value_and_gradient
from varref.engine.torsions import torsion_value_and_gradient
from varref.restraints.arrays import Restraints

#: Order of the per-term values written to ``terms_out``.
TERM_NAMES = ("bond", "angle", "torsion", "chiral", "plane", "nonbonded")
N_TERMS = len(TERM_NAMES)

_NO_PAIRS = np.zeros((0, 2), dtype=np.int64)
_NO_CONTACT = np.zeros(0, dtype=np.float64)


class KernelArrays(NamedTuple):
    """The covalent restraints as the combined kernel reads them (one argument, not 17);
    built by :func:`pack_kernel_arrays`.

    Shapes and units as in :mod:`varref.restraints.arrays`; ``*_weight`` = 1/sigma^2, index
    arrays int64 and in range, ``torsion_period`` >= 1, everything C-contiguous.
    """

    bond_atoms: np.ndarray
    bond_ideal: np.ndarray
    bond_weight: np.ndarray
    angle_atoms: np.ndarray
    angle_ideal: np.ndarray
    angle_weight: np.ndarray
    torsion_atoms: np.ndarray
    torsion_ideal: np.ndarray
    torsion_weight: np.ndarray
    torsion_period: np.ndarray
    chiral_atoms: np.ndarray
    chiral_ideal: np.ndarray
    chiral_weight: np.ndarray
    chiral_both_signs: np.ndarray
    plane_atoms: np.ndarray
    plane_offsets: np.ndarray
    plane_weight: np.ndarray


@dataclass(frozen=True)
class PackedRestraints:
    """Restraints of one topology ready for the kernels; built by :func:`pack_restraints`.

    Attributes
    ----------
    n_atoms : int
    kernel_arrays : KernelArrays
        Covalent restraints, validated and typed.
    nonbonded : NonbondedTopology
        Per-atom repulsion data and the excluded/1-4 pair table.
    nonbonded_settings : NonbondedSettings
    """

    n_atoms: int
    kernel_arrays: KernelArrays
    nonbonded: NonbondedTopology
    nonbonded_settings: NonbondedSettings = field(default_factory=NonbondedSettings)

    def neighbour_list(self) -> NeighbourList:
        """A fresh buffered non-bonded pair list for one model of this topology."""
        return NeighbourList(self.nonbonded, self.nonbonded_settings)

    def batch_neighbour_list(self) -> BatchNeighbourList:
        """A fresh set of buffered pair lists for a batch of models of this topology."""
        return BatchNeighbourList(self.nonbonded, self.nonbonded_settings)


def _index_array(values, n_columns: int | None, n_atoms: int, what: str) -> np.ndarray:
    arr = np.ascontiguousarray(values, dtype=np.int64)
    if n_columns is not None:
        arr = np.ascontiguousarray(arr.reshape(-1, n_columns))
    if arr.size and (arr.min() < 0 or arr.max() >= n_atoms):
        raise ValueError(f"{what}: atom index out of range [0, {n_atoms})")
    return arr


def _weight(sigma, n: int, what: str) -> np.ndarray:
    """1/sigma^2 after checking every sigma is finite and positive."""
    sigma = np.ascontiguousarray(sigma, dtype=np.float64)
    if sigma.shape != (n,):
        raise ValueError(f"{what}: sigma has shape {sigma.shape}, expected ({n},)")
    if n and not (np.all(np.isfinite(sigma)) and np.all(sigma > 0)):
        raise ValueError(f"{what}: every sigma must be finite and > 0")
    return 1.0 / (sigma * sigma)


def _float_array(values, n: int, what: str) -> np.ndarray:
    arr = np.ascontiguousarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"{what}: shape {arr.shape}, expected ({n},)")
    return arr


def pack_kernel_arrays(restraints: Restraints) -> KernelArrays:
    """Validated, typed covalent restraint arrays (the part of packing without repulsion).

    Parameters
    ----------
    restraints : Restraints

    Returns
    -------
    KernelArrays

    Raises
    ------
    ValueError
        An atom index is out of range, a sigma is not positive, or shapes disagree.
    """
    n = int(restraints.n_atoms)
    b, a, t, c, p = (restraints.bonds, restraints.angles, restraints.torsions,
                     restraints.chirals, restraints.planes)
    bond_atoms = _index_array(b.atoms, 2, n, "bonds")
    angle_atoms = _index_array(a.atoms, 3, n, "angles")
    torsion_atoms = _index_array(t.atoms, 4, n, "torsions")
    period = np.ascontiguousarray(t.period, dtype=np.int64).reshape(-1)
    if period.shape != (len(torsion_atoms),):
        raise ValueError("torsions: period has the wrong shape")
    chiral_atoms = _index_array(c.atoms, 4, n, "chirals")
    both = np.ascontiguousarray(c.both_signs, dtype=np.bool_).reshape(-1)
    if both.shape != (len(chiral_atoms),):
        raise ValueError("chirals: both_signs has the wrong shape")
    plane_atoms = np.ascontiguousarray(_index_array(p.atoms, None, n, "planes").reshape(-1))
    plane_offsets = np.ascontiguousarray(p.offsets, dtype=np.int64).reshape(-1)
    n_planes = len(plane_offsets) - 1
    if (n_planes < 0 or plane_offsets[0] != 0 or plane_offsets[-1] != len(plane_atoms)
            or np.any(np.diff(plane_offsets) < 0)):
        raise ValueError("planes: offsets are not a valid CSR index into atoms")
    return KernelArrays(
        bond_atoms=bond_atoms,
        bond_ideal=_float_array(b.ideal, len(bond_atoms), "bonds.ideal"),
        bond_weight=_weight(b.sigma, len(bond_atoms), "bonds"),
        angle_atoms=angle_atoms,
        angle_ideal=_float_array(a.ideal, len(angle_atoms), "angles.ideal"),
        angle_weight=_weight(a.sigma, len(angle_atoms), "angles"),
        torsion_atoms=torsion_atoms,
        torsion_ideal=_float_array(t.ideal, len(torsion_atoms), "torsions.ideal"),
        torsion_weight=_weight(t.sigma, len(torsion_atoms), "torsions"),
        torsion_period=np.where(period <= 0, 1, period),  # contract: period 0 means 1
        chiral_atoms=chiral_atoms,
        chiral_ideal=_float_array(c.ideal, len(chiral_atoms), "chirals.ideal"),
        chiral_weight=_weight(c.sigma, len(chiral_atoms), "chirals"),
        chiral_both_signs=both,
        plane_atoms=plane_atoms,
        plane_offsets=plane_offsets,
        plane_weight=_weight(p.sigma, n_planes, "planes"),
    )


def pack_restraints(
    restraints: Restraints, nonbonded_settings: NonbondedSettings | None = None
) -> PackedRestraints:
    """Pack a :class:`~varref.restraints.arrays.Restraints` for the engine (once per topology).

    Parameters
    ----------
    restraints : Restraints
    nonbonded_settings : NonbondedSettings, optional
        Repulsion parameters; defaults follow Phenix (c_rep 100, 1-4 factor 0.8, H-bond
        shrink 0.6 Å, buffer 1 Å).

    Returns
    -------
    PackedRestraints

    Raises
    ------
    ValueError
        An atom index is out of range, a sigma is not positive, or shapes disagree.
    """
    n = int(restraints.n_atoms)
    settings = nonbonded_settings or NonbondedSettings()
    arrays = pack_kernel_arrays(restraints)
    nb = restraints.nonbonded

    def per_atom(values, dtype, what):
        arr = np.ascontiguousarray(values, dtype=dtype).reshape(-1)
        if arr.shape != (n,):
            raise ValueError(f"nonbonded.{what}: shape {arr.shape}, expected ({n},)")
        return arr

    topology = build_nonbonded_topology(
        n,
        per_atom(nb.vdw_radius, np.float64, "vdw_radius"),
        per_atom(nb.ion_radius, np.float64, "ion_radius"),
        per_atom(nb.hbond_type, np.int8, "hbond_type"),
        per_atom(nb.is_hydrogen, np.bool_, "is_hydrogen"),
        _index_array(nb.excluded_pairs, 2, n, "nonbonded.excluded_pairs"),
        _index_array(nb.pairs_14, 2, n, "nonbonded.pairs_14"),
        arrays.bond_atoms,
    )
    return PackedRestraints(n, arrays, topology, settings)


# --------------------------------------------------------------------------- kernels


# The restraints cross into numba as a plain tuple, ``tuple(packed.kernel_arrays)``, and get
# their names back once per call with ``KernelArrays(*arrays)``. Passing the namedtuple itself
# costs ~2 us more per call (measured; its type fingerprint spells out every field name), a
# quarter of a 40-atom evaluation.


@njit(nogil=True, cache=True)
def _evaluate_model(xyz, grad, terms, r, nb_pairs, nb_contact, c_rep):
    """All terms of one model (``r``: :class:`KernelArrays`); per-term values go to
    ``terms`` (6,), the gradient to ``grad``.

    ``grad`` is zeroed here rather than by the caller so that, in the batched loop, each
    model's gradient is cleared right before use while it is still in cache.
    """
    grad[:, :] = 0.0
    terms[0] = bond_value_and_gradient(xyz, r.bond_atoms, r.bond_ideal, r.bond_weight, grad)
    terms[1] = angle_value_and_gradient(xyz, r.angle_atoms, r.angle_ideal, r.angle_weight, grad)
    terms[2] = torsion_value_and_gradient(xyz, r.torsion_atoms, r.torsion_ideal,
                                          r.torsion_weight, r.torsion_period, grad)
    terms[3] = chiral_value_and_gradient(xyz, r.chiral_atoms, r.chiral_ideal, r.chiral_weight,
                                         r.chiral_both_signs, grad)
    terms[4] = plane_value_and_gradient(xyz, r.plane_atoms, r.plane_offsets, r.plane_weight,
                                        grad)
    terms[5] = nonbonded_value_and_gradient(xyz, nb_pairs, nb_contact, c_rep, grad)
    return terms[0] + terms[1] + terms[2] + terms[3] + terms[4] + terms[5]


@njit(nogil=True, cache=True)
def _evaluate_single(xyz, grad, terms, arrays, nb_pairs, nb_contact, c_rep):
    """:func:`_evaluate_model` called from Python (``arrays``: plain tuple, see above)."""
    return _evaluate_model(xyz, grad, terms, KernelArrays(*arrays), nb_pairs, nb_contact, c_rep)


@njit(nogil=True, cache=True)
def _evaluate_batch(xyz, grad, terms, values, arrays, nb_pairs, nb_contact, nb_offsets, c_rep):
    """Loop of :func:`_evaluate_model` over K models on one thread; model k uses pair rows
    ``nb_offsets[k]:nb_offsets[k+1]``. Single-threaded on purpose: it releases the GIL, so
    callers (Dask threads) run several evaluations at once without oversubscribing cores."""
    r = KernelArrays(*arrays)
    for k in range(xyz.shape[0]):
        lo = nb_offsets[k]
        hi = nb_offsets[k + 1]
        values[k] = _evaluate_model(xyz[k], grad[k], terms[k], r, nb_pairs[lo:hi],
                                    nb_contact[lo:hi], c_rep)


# --------------------------------------------------------------------------- public API


def _coordinates(xyz: np.ndarray, n_atoms: int, batched: bool) -> np.ndarray:
    xyz = np.ascontiguousarray(xyz, dtype=np.float64)
    expected = ("K", n_atoms, 3) if batched else (n_atoms, 3)
    if xyz.ndim != len(expected) or xyz.shape[-2:] != (n_atoms, 3):
        raise ValueError(f"coordinates of shape {xyz.shape}, expected {expected}")
    return xyz


def _gradient_buffer(grad: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    if grad is None:
        return np.empty(shape)  # the kernels zero it
    if grad.shape != shape or grad.dtype != np.float64 or not grad.flags.c_contiguous:
        raise ValueError(f"grad buffer must be C-contiguous float64 of shape {shape}")
    return grad


def _terms_buffer(terms: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    if terms is None:
        return np.empty(shape)
    if terms.shape != shape or terms.dtype != np.float64 or not terms.flags.c_contiguous:
        raise ValueError(f"terms_out must be C-contiguous float64 of shape {shape}")
    return terms


def _check_pairs_topology(pairs, topology_atoms: int) -> None:
    # the kernels do no bounds checks: a pair list must fit the coordinates
    if (pairs.n_atoms is not None and pairs.n_atoms != topology_atoms) \
            or pairs.atoms_needed > topology_atoms:
        raise ValueError(f"pair list built for {pairs.n_atoms} atoms (largest index "
                         f"{pairs.atoms_needed - 1}), topology has {topology_atoms}")


def restraint_value_and_gradient(
    xyz: np.ndarray,
    packed: PackedRestraints,
    nonbonded_pairs: NonbondedPairs | None = None,
    *,
    grad: np.ndarray | None = None,
    terms_out: np.ndarray | None = None,
) -> tuple[float, np.ndarray]:
    """Restraint target and gradient of one model (one numba call for all terms).

    Parameters
    ----------
    xyz : (N, 3) array
        Coordinates in Å (converted to C-contiguous float64 if needed).
    packed : PackedRestraints
    nonbonded_pairs : NonbondedPairs, optional
        Current pair list (``NeighbourList.update(xyz)``); None skips the repulsion term.
    grad : (N, 3) float64 C-contiguous array, optional
        Output buffer, overwritten (saves an allocation per call).
    terms_out : (6,) float64 array, optional
        Receives the per-term values in the order of :data:`TERM_NAMES`.

    Returns
    -------
    value : float
    grad : (N, 3) float64
        dT/dxyz.
    """
    xyz = _coordinates(xyz, packed.n_atoms, batched=False)
    grad = _gradient_buffer(grad, xyz.shape)
    terms = _terms_buffer(terms_out, (N_TERMS,))
    if nonbonded_pairs is None:
        pairs, contact = _NO_PAIRS, _NO_CONTACT
    else:
        _check_pairs_topology(nonbonded_pairs, packed.n_atoms)
        pairs, contact = nonbonded_pairs.pairs, nonbonded_pairs.contact
    value = _evaluate_single(xyz, grad, terms, tuple(packed.kernel_arrays), pairs, contact,
                             float(packed.nonbonded_settings.c_rep))
    return float(value), grad


def restraint_values_and_gradients_batch(
    xyz: np.ndarray,
    packed: PackedRestraints,
    nonbonded_pairs: BatchNonbondedPairs | None = None,
    *,
    grad: np.ndarray | None = None,
    terms_out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Restraint targets and gradients of K models sharing one topology (one numba call,
    one thread, GIL released).

    Parameters
    ----------
    xyz : (K, N, 3) array
    packed : PackedRestraints
    nonbonded_pairs : BatchNonbondedPairs, optional
        Per-model pair lists (``BatchNeighbourList.update(xyz)``); None skips repulsion.
    grad : (K, N, 3) float64 C-contiguous array, optional
        Output buffer, overwritten.
    terms_out : (K, 6) float64 array, optional
        Receives per-model, per-term values (order of :data:`TERM_NAMES`).

    Returns
    -------
    values : (K,) float64
    grad : (K, N, 3) float64
    """
    xyz = _coordinates(xyz, packed.n_atoms, batched=True)
    n_models = xyz.shape[0]
    grad = _gradient_buffer(grad, xyz.shape)
    terms = _terms_buffer(terms_out, (n_models, N_TERMS))
    values = np.empty(n_models)
    if nonbonded_pairs is None:
        pairs, contact = _NO_PAIRS, _NO_CONTACT
        offsets = np.zeros(n_models + 1, dtype=np.int64)
    else:
        _check_pairs_topology(nonbonded_pairs, packed.n_atoms)
        pairs, contact, offsets = (nonbonded_pairs.pairs, nonbonded_pairs.contact,
                                   nonbonded_pairs.offsets)
        if len(offsets) != n_models + 1:
            raise ValueError(f"pair lists for {len(offsets) - 1} models, got {n_models}")
    _evaluate_batch(xyz, grad, terms, values, tuple(packed.kernel_arrays), pairs, contact,
                    offsets, float(packed.nonbonded_settings.c_rep))
    return values, grad


def restraint_terms(
    xyz: np.ndarray, packed: PackedRestraints, nonbonded_pairs: NonbondedPairs | None = None
) -> dict[str, float]:
    """Per-term restraint values of one model, keyed by :data:`TERM_NAMES`."""
    terms = np.empty(N_TERMS)
    restraint_value_and_gradient(xyz, packed, nonbonded_pairs, terms_out=terms)
    return dict(zip(TERM_NAMES, terms.tolist()))
