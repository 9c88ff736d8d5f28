"""Covalent geometry and non-bonded repulsion from the monomer library (one term).

``T_geometry = T_bond + T_angle + T_torsion + T_chiral + T_plane + T_nonbonded``, evaluated by
the engine's batched kernel (:mod:`varref.engine.restraint_target`) for K coordinate sets in
one call. The only state is one buffered non-bonded pair list per problem.
"""

from __future__ import annotations

import numpy as np

from varref.engine import fused_lbfgs
from varref.engine.neighbours import BatchNonbondedPairs, max_contact_distance, max_displacement_sq_members
from varref.engine.restraint_target import PackedRestraints, pack_restraints, restraint_values_and_gradients_batch
from varref.refinement.terms.base import RESTRAINT, TermSetup
from varref.restraints.arrays import Restraints
from varref.restraints.subset import select_restraints


class GeometryTerm:
    """Bonds, angles, torsions, chiralities, planes and repulsion of one topology."""

    name = "geometry"
    kind = RESTRAINT

    def __init__(self, restraints: Restraints, packed: PackedRestraints | None = None) -> None:
        self.restraints = restraints
        self.packed = pack_restraints(restraints) if packed is None else packed
        self._pair_lists: dict[int, object] = {}
        self._reference: np.ndarray | None = None  # (K, N, 3): where each list was built
        # the concatenated lists of the last call: reused while the members are the same and
        # no list was rebuilt (most evaluations; the concatenation cost as much as the check)
        self._batch: tuple[tuple[int, ...], tuple[int, ...], BatchNonbondedPairs] | None = None

    def _pairs(self, xyz: np.ndarray, members: np.ndarray) -> BatchNonbondedPairs:
        xyz = np.ascontiguousarray(xyz, dtype=np.float64)
        key = tuple(int(k) for k in members)
        # every problem's list was built around its row of ``_reference``; one kernel call
        # finds the problems that moved more than buffer/2 since (rows never built: inf)
        if self._reference is None or self._reference.shape[0] <= max(key):
            grown = np.full((max(key) + 1,) + xyz.shape[1:], np.inf)
            if self._reference is not None:
                grown[:len(self._reference)] = self._reference
            self._reference = grown
        half = 0.5 * self.packed.nonbonded_settings.buffer
        moved = max_displacement_sq_members(xyz, self._reference,
                                            np.asarray(key, dtype=np.int64))
        for i in np.flatnonzero(~(moved <= half * half)):
            k = key[i]
            if k not in self._pair_lists:
                self._pair_lists[k] = self.packed.neighbour_list()
            self._pair_lists[k].rebuild(xyz[i])
            self._reference[k] = xyz[i]
        builds = tuple(self._pair_lists[k].n_builds for k in key)
        if self._batch is not None and self._batch[0] == key and self._batch[1] == builds:
            return self._batch[2]
        lists = [self._pair_lists[k].pairs for k in key]
        offsets = np.zeros(len(lists) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(p) for p in lists])
        batch = BatchNonbondedPairs(np.concatenate([p.pairs for p in lists]),
                                    np.concatenate([p.contact for p in lists]), offsets)
        self._batch = (key, builds, batch)
        return batch

    def evaluate(self, xyz: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return restraint_values_and_gradients_batch(xyz, self.packed, self._pairs(xyz, members))

    def fused_slot(self) -> tuple[int, tuple]:
        """Kind and kernel arguments for the fused trial minimiser (:mod:`varref.engine.fused_lbfgs`)."""
        topology, s = self.packed.nonbonded, self.packed.nonbonded_settings
        # the cutoff of build_nonbonded_pairs; the list is rebuilt as in _pairs
        cutoff = max_contact_distance(topology, s) + s.buffer
        scalars = tuple(float(v) for v in (cutoff, s.k_rep, s.factor_1_4, s.shrink_donor_acceptor,
                                           s.minimum_distance, s.default_distance, s.buffer,
                                           s.c_rep))
        return fused_lbfgs.GEOMETRY, (tuple(self.packed.kernel_arrays),
                                      (topology.radius, topology.hbond_type, topology.partner_offsets,
                                       topology.partners, topology.partner_kind), scalars)

    def subset(self, atoms: np.ndarray) -> "GeometryTerm":
        return GeometryTerm(select_restraints(self.restraints, atoms))


def build(setup: TermSetup) -> GeometryTerm:
    return GeometryTerm(setup.restraints, setup.packed)
