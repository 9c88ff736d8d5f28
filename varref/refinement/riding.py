"""Riding hydrogens: hydrogen positions computed from their heavy atoms, not refined.

Refined as free atoms, hydrogens make the minimisation stiff (X-H bonds of 1 Å with
σ = 0.02 Å beside a map pull on the heavy atoms only) and L-BFGS crawls: 6OUT chains A-B
(4,505 heavy atoms) with their hydrogens, from a 1 Å perturbation, stood at CC_mask 0.986
after five macro-cycles where the model without them reached 0.996 (docs/benchmarks.md,
eighth pass). As in Phenix and Refmac/servalcat, varref lets them ride:

* Within one minimisation (a macro-cycle, a run of the final stage) every hydrogen keeps
  its offset from its parent atom, ``x_H = x_P + d_H``: the variables are the heavy atoms,
  and the gradient on a hydrogen is added to its parent's (exact for this model).
* Between minimisations the hydrogens are placed again from their parent's local frame
  (:meth:`RidingHydrogens.place`): the parent P, its first heavy neighbour A and a second
  atom B (P's other heavy neighbour, else A's), with each hydrogen's direction in that
  frame taken from the library's ideal placement (:func:`ideal_hydrogen_positions`) and its
  distance the restraints' ideal X-H bond. A hydrogen thus follows its group's rotations
  with library geometry.
* The restraints that only hold hydrogens in place (bonds, angles, torsions, chiralities
  with a hydrogen; hydrogens in planes) are dropped (:meth:`RidingHydrogens.restraints`);
  hydrogens keep their non-bonded repulsion, which is what they are there for.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from varref.engine.riding_variables import fold_riding
from varref.errors import InputError
from varref.model import Model
from varref.restraints import Restraints
from varref.restraints.arrays import (AngleRestraints, BondRestraints, ChiralRestraints,
                                      PlaneRestraints, TorsionRestraints)
from varref.restraints.graph import hydrogen_parents, pair_keys

__all__ = ["RidingHydrogens", "ideal_hydrogen_positions", "riding_hydrogens"]

log = logging.getLogger(__name__)


def _first_heavy_neighbours(is_hydrogen: np.ndarray, bond_atoms: np.ndarray
                            ) -> tuple[np.ndarray, np.ndarray]:
    """Each atom's first and second heavy neighbour in bond order (-1 where missing)."""
    n = len(is_hydrogen)
    bonds = np.asarray(bond_atoms, dtype=np.int64).reshape(-1, 2)
    ends, partners = bonds.reshape(-1), bonds[:, ::-1].reshape(-1)
    keep = ~is_hydrogen[partners]
    ends, partners = ends[keep], partners[keep]
    order = np.argsort(ends, kind="stable")  # by atom, bond order within an atom
    ends, partners = ends[order], partners[order]
    first, second = np.full(n, -1, np.int64), np.full(n, -1, np.int64)
    atoms, start = np.unique(ends, return_index=True)
    first[atoms] = partners[start]
    has_second = start + 1 < len(ends)
    has_second[has_second] = ends[start[has_second] + 1] == atoms[has_second]
    second[atoms[has_second]] = partners[start[has_second] + 1]
    return first, second


def _frames(xyz: np.ndarray, p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Orthonormal frames (..., n, 3 axes, 3) at P: e1 along P→A, e2 in the PAB plane
    (NaN where P, A and B are collinear or coincide)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        e1 = xyz[..., a, :] - xyz[..., p, :]
        e1 /= np.linalg.norm(e1, axis=-1, keepdims=True)
        v = xyz[..., b, :] - xyz[..., p, :]
        e2 = v - np.sum(v * e1, axis=-1, keepdims=True) * e1
        e2 /= np.linalg.norm(e2, axis=-1, keepdims=True)
    return np.stack([e1, e2, np.cross(e1, e2)], axis=-2)


@dataclass(frozen=True)
class RidingHydrogens:
    """Which hydrogens ride on which atoms, and their places in their parents' frames.

    Attributes
    ----------
    hydrogen : (H,) int64
        Riding hydrogens (those bonded to a heavy atom).
    parent : (H,) int64
        The heavy atom each rides on.
    framed : (H,) bool
        Hydrogens placed in a local frame (else translated with their parent only: the
        parent has no heavy neighbour with a second atom to span a frame).
    frame_a, frame_b : (H,) int64
        The frame atoms A and B (meaningful where ``framed``).
    local : (H, 3) float64
        Coordinates in the frame (framed) or the offset from the parent (others), Å.
    """

    hydrogen: np.ndarray
    parent: np.ndarray
    framed: np.ndarray
    frame_a: np.ndarray
    frame_b: np.ndarray
    local: np.ndarray

    @classmethod
    def from_model(cls, model: Model, restraints: Restraints,
                   xyz: np.ndarray | None = None) -> RidingHydrogens | None:
        """The riding model of ``model``'s hydrogens: their directions in their parents'
        frames as at ``xyz`` (default ``model.xyz``; e.g. :func:`ideal_hydrogen_positions`),
        their distances the ideal X-H bond lengths of ``restraints``. None if no hydrogen is
        bonded to a heavy atom."""
        is_hydrogen = np.asarray(model.is_hydrogen, dtype=bool)
        bonds = restraints.bonds.atoms
        parent_of = hydrogen_parents(is_hydrogen, bonds)
        hydrogen = np.flatnonzero(parent_of >= 0)
        if not len(hydrogen):
            return None
        parent = parent_of[hydrogen]
        first, second = _first_heavy_neighbours(is_hydrogen, bonds)
        a = first[parent]
        a_other = np.where(first[np.maximum(a, 0)] != parent, first[np.maximum(a, 0)],
                           second[np.maximum(a, 0)])
        b = np.where(second[parent] >= 0, second[parent], a_other)
        framed = (a >= 0) & (b >= 0)
        xyz = np.asarray(model.xyz if xyz is None else xyz, dtype=np.float64)
        local = xyz[hydrogen] - xyz[parent]
        # directions from ``xyz``, lengths from the restraints' ideal X-H bonds (the library's
        # placement may use other X-H distances than the restraints)
        keys = pair_keys(bonds, model.n_atoms)
        order = np.argsort(keys)
        wanted = pair_keys(np.stack([hydrogen, parent], axis=1), model.n_atoms)
        found = np.minimum(np.searchsorted(keys[order], wanted), len(keys) - 1)
        has_bond = keys[order][found] == wanted
        ideal = restraints.bonds.ideal[order][found]
        length = np.linalg.norm(local, axis=1)
        scale = np.where(has_bond & (length > 0), ideal / np.where(length > 0, length, 1.0), 1.0)
        local *= scale[:, None]
        if framed.any():
            offsets = local.copy()
            axes = _frames(xyz, parent[framed], a[framed], b[framed])
            local[framed] = np.einsum("nij,nj->ni", axes, local[framed])
            framed &= np.isfinite(local).all(axis=1)  # a degenerate frame: translate only
            local[~framed] = offsets[~framed]
        return cls(hydrogen, parent, framed, np.where(framed, a, -1), np.where(framed, b, -1),
                   local)

    def place(self, xyz: np.ndarray) -> np.ndarray:
        """A copy of ``xyz`` (N, 3) or (K, N, 3) with every riding hydrogen placed from its
        parent's frame (or its parent's position plus its offset). A hydrogen whose frame
        has collapsed (its frame atoms collinear or on top of each other) stays where it is."""
        out = np.array(xyz, dtype=np.float64, copy=True)
        f, h, p = self.framed, self.hydrogen, self.parent
        if f.any():
            axes = _frames(out, p[f], self.frame_a[f], self.frame_b[f])
            placed = out[..., p[f], :] + np.einsum("...nij,ni->...nj", axes, self.local[f])
            out[..., h[f], :] = np.where(np.isfinite(placed), placed, out[..., h[f], :])
        if (~f).any():
            out[..., h[~f], :] = out[..., p[~f], :] + self.local[~f]
        return out

    def parent_slots(self, variables: np.ndarray) -> np.ndarray:
        """(H,) index of each hydrogen's parent among the ``variables`` (N,) bool, -1 where
        the parent is not a variable."""
        slot = np.full(len(variables), -1, dtype=np.int64)
        slot[variables] = np.arange(int(np.count_nonzero(variables)))
        return slot[self.parent]

    def fold(self, gradient: np.ndarray, variables: np.ndarray,
             parent_slot: np.ndarray | None = None) -> np.ndarray:
        """The gradient (..., N, 3) on every atom as the gradient (..., n, 3) on the
        ``variables`` (N,) bool of a minimiser in which these hydrogens ride: x_H = x_P + d_H
        adds each hydrogen's gradient to its parent's (a parent that is not a variable
        takes none). Per row, the hydrogens' gradients are summed per parent first.
        ``parent_slot``: :meth:`parent_slots` of ``variables``, when the caller keeps it."""
        if parent_slot is None:
            parent_slot = self.parent_slots(variables)
        rows = gradient.reshape(-1, *gradient.shape[-2:])
        folded = fold_riding(rows, np.flatnonzero(variables), self.hydrogen, parent_slot)
        return folded.reshape(*gradient.shape[:-2], folded.shape[1], 3)

    def subset(self, atoms: np.ndarray, xyz: np.ndarray) -> RidingHydrogens | None:
        """The hydrogens among ``atoms`` (sorted, unique) that ride on a parent among them,
        renumbered to ``atoms``' order and translated with their parents by their offsets at
        ``xyz`` (N, 3): for minimising that subset (the weight search's segments) with
        :class:`~varref.refinement.objective.Objective`, which never places them in frames.
        None if there is none."""
        atoms = np.asarray(atoms, dtype=np.int64)
        size = int(max(atoms.max(initial=-1), self.hydrogen.max(), self.parent.max())) + 1
        index = np.full(size, -1, dtype=np.int64)
        index[atoms] = np.arange(len(atoms))
        keep = (index[self.hydrogen] >= 0) & (index[self.parent] >= 0)
        if not keep.any():
            return None
        hydrogen, parent = self.hydrogen[keep], self.parent[keep]
        none = np.full(len(hydrogen), -1, dtype=np.int64)
        return RidingHydrogens(index[hydrogen], index[parent], np.zeros(len(hydrogen), bool),
                               none, none.copy(), np.asarray(xyz)[hydrogen] - np.asarray(xyz)[parent])

    def restraints(self, restraints: Restraints) -> Restraints:
        """``restraints`` without what only places hydrogens: bonds, angles, torsions and
        chiralities that involve a riding hydrogen; riding hydrogens leave the planes (a plane
        keeps at least four atoms or goes). Non-bonded parameters are kept whole."""
        rides = np.zeros(restraints.n_atoms, dtype=bool)
        rides[self.hydrogen] = True

        def kept(group):
            return ~rides[group.atoms].any(axis=1) if len(group) else np.zeros(0, bool)

        b, a, t, c, p = (restraints.bonds, restraints.angles, restraints.torsions,
                         restraints.chirals, restraints.planes)
        kb, ka, kt, kc = kept(b), kept(a), kept(t), kept(c)
        plane_atoms, offsets, plane_sigma = [], [0], []
        for k in range(len(p)):
            members = p.atoms[p.offsets[k]:p.offsets[k + 1]]
            members = members[~rides[members]]
            if len(members) >= 4:
                plane_atoms.extend(members.tolist())
                offsets.append(len(plane_atoms))
                plane_sigma.append(p.sigma[k])
        return replace(
            restraints,
            bonds=BondRestraints(b.atoms[kb], b.ideal[kb], b.sigma[kb]),
            angles=AngleRestraints(a.atoms[ka], a.ideal[ka], a.sigma[ka]),
            torsions=TorsionRestraints(t.atoms[kt], t.ideal[kt], t.sigma[kt], t.period[kt]),
            chirals=ChiralRestraints(c.atoms[kc], c.ideal[kc], c.sigma[kc], c.both_signs[kc]),
            planes=PlaneRestraints(np.array(plane_atoms, dtype=np.int64),
                                   np.array(offsets, dtype=np.int64),
                                   np.array(plane_sigma, dtype=np.float64)))


def ideal_hydrogen_positions(model: Model, restraints: Restraints | None = None) -> np.ndarray:
    """``model.xyz`` with every hydrogen the monomer library places at its ideal position
    (gemmi, from the heavy atoms as they are); hydrogens it does not place keep theirs. The
    library and extra dictionaries are those ``restraints`` were built from (default: the
    default library).

    Riding hydrogens take their places in their parents' frames from these coordinates, so
    the refinement repels the hydrogens validation will see (the clashscore rebuilds them
    the same way): a deposited model's hydrogens may sit in other methyl or hydroxyl
    rotamers."""
    from varref.restraints.hydrogens import add_riding_hydrogens, dictionaries

    xyz = np.array(model.xyz, dtype=np.float64, copy=True)
    hydrogens = np.flatnonzero(model.is_hydrogen)
    if not len(hydrogens):
        return xyz
    try:
        full = add_riding_hydrogens(model, *dictionaries(restraints))
    except InputError as exc:
        log.warning("riding hydrogens keep the model's own positions: %s", exc)
        return xyz
    placed = {(int(r), str(n)): i for i, (r, n, h) in
              enumerate(zip(full.residue_index, full.atom_name, full.is_hydrogen)) if h}
    for i in hydrogens:
        j = placed.get((int(model.residue_index[i]), str(model.atom_name[i])))
        if j is not None:
            xyz[i] = full.xyz[j]
    return xyz


def riding_hydrogens(model: Model, restraints: Restraints, options) -> RidingHydrogens | None:
    """The riding model of ``model``'s hydrogens under ``options``
    (:class:`~varref.refinement.options.RefineOptions`; None: ``hydrogens="restrained"``, or
    no hydrogens), their frame coordinates from the library's ideal placement (``add`` built
    them there)."""
    if options.hydrogens == "restrained" or not model.is_hydrogen.any():
        return None
    reference = (model.xyz if options.hydrogens == "add"
                 else ideal_hydrogen_positions(model, restraints))
    return RidingHydrogens.from_model(model, restraints, reference)
