"""All-atom clashscore: riding hydrogens from the monomer library, then van der Waals
overlaps >= 0.4 Å per 1000 atoms.

Procedure
---------
1. Hydrogens are (re)built at the monomer library's ideal geometry by gemmi
   (``prepare_topology(..., h_change=ReAddButWater)``: existing hydrogens are removed and
   every hydrogen the dictionary defines is placed; waters get none). The library's
   default X-H distances are the X-ray (electron-cloud) ones, ~0.96 Å, so the
   electron-cloud radii below apply.
2. Radii: Probe's explicit-hydrogen, electron-cloud van der Waals radii (Word et al. 1999,
   J. Mol. Biol. 285, 1711; ``atomprops.h`` of github.com/rlabduke/probe), see
   :data:`PROBE_RADII`: C 1.75 (carbonyl/carboxyl C 1.70), N 1.55, O 1.40, S 1.80, P 1.80,
   Se 1.90; H 1.22 on carbon, 1.05 on N/O (polar) and on aromatic ring carbons; metal ions
   with Probe's ionic radii.
3. Every atom pair closer than the sum of radii is found with a k-d tree (scipy
   ``cKDTree``); overlap = r_i + r_j - d. Pairs are ignored when they are 1-2, 1-3 or 1-4
   neighbours in the bond graph (bonds from the monomer library, links included), 1-5
   neighbours through a hydrogen, or a hydrogen-bond donor-acceptor pair (polar H or
   N/O donor with an O or N acceptor).
4. clashscore = 1000 x (pairs with overlap >= 0.4 Å) / (atoms, hydrogens included).

How it differs from MolProbity's clashscore (Reduce + Probe)
------------------------------------------------------------
* Reduce optimises rotatable hydrogens (OH, SH, NH3+, methyls), flips Asn/Gln/His and picks
  His protonation; here every hydrogen sits where the dictionary's ideal torsion puts it
  and His is doubly protonated. Hydroxyl/amine hydrogens can therefore make contacts that
  Reduce would have rotated away (a few extra clashes), or miss some.
* Probe measures overlap with dot surfaces and calls a clash where dots of one atom
  penetrate the other's surface by >= 0.4 Å; for an isolated pair that is the same overlap
  as here, but Probe counts clashing *atom pairs* after merging dots, which can differ by a
  few per thousand atoms in crowded regions.
* Probe excludes pairs up to three bonds apart, and up to four when one atom is a hydrogen
  (its ``-4H`` default); we do the same, so e.g. HA(i-1)...CD(Pro i) and N(i)...H(i+1)
  never count. (Without the 1-5 rule for hydrogens those two alone put ~5 clashes per
  1000 atoms on a well-refined model such as 6OUT.)
* Probe counts an H-bond pair as a clash only when it overlaps beyond its H-bond
  tolerance; we never count donor-acceptor pairs.
Treat the number as a MolProbity-like clashscore for ranking and monitoring models, not as
a replacement for the MolProbity value in a deposition.
"""

from __future__ import annotations

from dataclasses import dataclass

import gemmi
import numpy as np
from scipy.spatial import cKDTree

from varref.model import Model
from varref.restraints import Restraints, build_restraints
from varref.restraints.arrays import HBOND_CODES
from varref.restraints.graph import bonded_neighbour_pairs, hydrogen_parents, pair_keys
from varref.restraints.hydrogens import add_riding_hydrogens, dictionaries

#: Probe's explicit-H, electron-cloud radii (Å) by element; see module docstring.
PROBE_RADII = {
    "C": 1.75, "N": 1.55, "O": 1.40, "S": 1.80, "P": 1.80, "SE": 1.90, "F": 1.30,
    "CL": 1.77, "BR": 1.95, "I": 2.10, "AS": 2.00,
    "LI": 0.60, "NA": 0.95, "MG": 0.65, "AL": 0.50, "K": 1.33, "CA": 0.99, "MN": 0.80,
    "FE": 0.74, "CO": 0.70, "NI": 0.66, "CU": 0.72, "ZN": 0.71, "CD": 0.91, "HG": 1.00,
}
CARBONYL_CARBON_RADIUS = 1.70
HYDROGEN_RADIUS = 1.22
POLAR_OR_AROMATIC_HYDROGEN_RADIUS = 1.05
CLASH_OVERLAP = 0.4

#: Ring carbons whose hydrogens Probe treats as aromatic (radius 1.05).
AROMATIC_CARBONS = {
    "PHE": {"CG", "CD1", "CD2", "CE1", "CE2", "CZ"},
    "TYR": {"CG", "CD1", "CD2", "CE1", "CE2", "CZ"},
    "TRP": {"CG", "CD1", "CD2", "CE2", "CE3", "CZ2", "CZ3", "CH2"},
    "HIS": {"CG", "CD2", "CE1"},
    **{base: {"C2", "C4", "C5", "C6", "C8"} for base in
       ("A", "G", "C", "U", "DA", "DG", "DC", "DT", "DU")},
}


def probe_radii(model: Model, bond_atoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-atom Probe radius and a polar-hydrogen flag, from elements and the bond graph.

    A hydrogen's parent is its first bonded heavy atom (in bond order,
    :func:`varref.restraints.graph.hydrogen_parents`); a carbon bonded to an oxygen that has
    no other bond is a carbonyl/carboxyl carbon.

    Returns
    -------
    radius : (N,) float64
    polar_hydrogen : (N,) bool
        Hydrogens bonded to N or O (hydrogen-bond donors' hydrogens).
    """
    n = model.n_atoms
    bonds = np.asarray(bond_atoms, dtype=np.int64).reshape(-1, 2)
    element = np.char.upper(model.element.astype(str))
    parent = hydrogen_parents(model.is_hydrogen, bonds)
    degree = np.bincount(bonds.reshape(-1), minlength=n)

    radius = np.empty(n)
    for symbol in np.unique(element):
        if symbol in PROBE_RADII:
            value = PROBE_RADII[symbol]
        else:
            element_info = gemmi.Element(symbol)
            value = element_info.vdw_r if element_info.atomic_number else 1.75
        radius[element == symbol] = value
    # carbonyl/carboxyl carbons
    lone_oxygen = (element == "O") & (degree == 1)
    carbonyl = np.zeros(n, dtype=bool)
    for a, b in ((0, 1), (1, 0)):
        hit = (element[bonds[:, a]] == "C") & lone_oxygen[bonds[:, b]]
        carbonyl[bonds[hit, a]] = True
    radius[carbonyl] = CARBONYL_CARBON_RADIUS
    # hydrogens by their parent: polar (on N or O) or aromatic (on a ring carbon) are smaller
    hydrogen = np.isin(element, ("H", "D"))
    has_parent = hydrogen & (parent >= 0)
    parent_element = np.where(has_parent, element[np.maximum(parent, 0)], "")
    polar_hydrogen = hydrogen & np.isin(parent_element, ("N", "O"))
    aromatic = np.zeros(n, dtype=bool)
    for i in np.flatnonzero(has_parent & (parent_element == "C")):
        p = parent[i]
        aromatic[i] = model.atom_name[p] in AROMATIC_CARBONS.get(str(model.residue_name[p]), ())
    radius[hydrogen] = np.where(polar_hydrogen[hydrogen] | aromatic[hydrogen],
                                POLAR_OR_AROMATIC_HYDROGEN_RADIUS, HYDROGEN_RADIUS)
    return radius, polar_hydrogen


@dataclass(frozen=True)
class ClashTopology:
    """What the clash search needs that depends on the hydrogen-complete topology only, not on
    the coordinates: returned by :func:`clashes_and_topology`, reusable for other
    coordinates of the same model (e.g. a refinement's start and result).

    Attributes
    ----------
    atom_names : (M,) str
        Atom names of the model with riding hydrogens, in its order (the consistency check).
    radius : (M,) float64
        Probe radii.
    polar_hydrogen, acceptor, donor : (M,) bool
    parent : (M,) int64
        Heavy atom each hydrogen rides on (-1 for heavy atoms).
    bonded_keys : (P,) int64
        Keys (i * M + j, i < j) of the 1-2, 1-3 and 1-4 pairs.
    """

    atom_names: np.ndarray
    radius: np.ndarray
    polar_hydrogen: np.ndarray
    acceptor: np.ndarray
    donor: np.ndarray
    parent: np.ndarray
    bonded_keys: np.ndarray

    def matches(self, full: Model) -> bool:
        """True if ``full`` (a model with riding hydrogens) has this topology's atoms."""
        return (len(self.atom_names) == full.n_atoms
                and bool(np.array_equal(self.atom_names, full.atom_name)))


def _topology_of(full: Model, restraints: Restraints) -> ClashTopology:
    return _topology_from_graph(full, restraints.bonds.atoms, restraints.nonbonded.hbond_type,
                                restraints.nonbonded.excluded_pairs,
                                restraints.nonbonded.pairs_14)


def _topology_from_graph(full: Model, bonds: np.ndarray, hbond: np.ndarray,
                         excluded_pairs: np.ndarray, pairs_14: np.ndarray) -> ClashTopology:
    """The clash topology of ``full`` from its bonds, the H-bond types of its N and O atoms
    and its 1-2/1-3 and 1-4 pairs."""
    radius, polar_hydrogen = probe_radii(full, bonds)
    element = np.char.upper(full.element.astype(str))
    acceptor = (element == "O") | ((element == "N") & np.isin(
        hbond, (HBOND_CODES["A"], HBOND_CODES["B"])))
    donor = np.isin(element, ("N", "O")) & np.isin(hbond, (HBOND_CODES["D"], HBOND_CODES["B"]))
    bonded = np.concatenate([pair_keys(excluded_pairs, full.n_atoms),
                             pair_keys(pairs_14, full.n_atoms)])
    parent = hydrogen_parents(full.is_hydrogen, bonds)
    return ClashTopology(np.array(full.atom_name, copy=True), radius, polar_hydrogen, acceptor,
                         donor, parent, np.unique(bonded))


#: A rebuilt hydrogen must sit within this distance (Å) of its parent (ideal X-H 0.82-1.1 Å).
RIDING_BOND_MAX = 1.3
#: A hydrogen whose name the residue's dictionary lacks (one a modification added, e.g. the
#: N-terminal H1-H3) rides on the heavy atom of its residue it sits on, when no other heavy
#: atom of the residue is within this distance (Å; two bonds away they sit ~1.9-2.2 Å off).
NEXT_HEAVY_MIN = 1.5


def _topology_from_heavy_atoms(full: Model, model: Model, restraints: Restraints,
                               library: tuple[str | None, tuple[str, ...]]
                               ) -> ClashTopology | None:
    """The topology of ``full`` (``model`` with its hydrogens rebuilt) from ``model``'s
    restraints instead of building restraints again (a third of a second on 17,000 atoms).

    The rebuilt model has ``model``'s heavy atoms (same residues and names, possibly
    reordered within a residue), so its heavy-atom bonds (library, links, ties of atoms the
    dictionary lacks) and H-bond types are ``model``'s; each rebuilt hydrogen is bonded to
    its parent in the residue's dictionary (``library``: monomer-library directory and extra
    dictionaries). None when that is not certain — heavy atoms that do not match one to one
    (e.g. alternative conformations under one name), a hydrogen away from its parent or
    without one clear parent, a heavy atom of ``model`` tied to a hydrogen — and the caller
    builds.
    """
    heavy_m = np.flatnonzero(~model.is_hydrogen)
    heavy_f = np.flatnonzero(~full.is_hydrogen)
    if restraints.n_atoms != model.n_atoms or len(heavy_m) != len(heavy_f) or not len(heavy_f):
        return None
    # match heavy atoms by (residue, name): both sides sorted by that key must agree
    order_m = heavy_m[np.lexsort((model.atom_name[heavy_m], model.residue_index[heavy_m]))]
    order_f = heavy_f[np.lexsort((full.atom_name[heavy_f], full.residue_index[heavy_f]))]
    names, residues = full.atom_name[order_f], full.residue_index[order_f]
    if not (np.array_equal(model.atom_name[order_m], names)
            and np.array_equal(model.residue_index[order_m], residues)
            and np.array_equal(model.element[order_m], full.element[order_f])):
        return None
    if np.any((names[1:] == names[:-1]) & (residues[1:] == residues[:-1])):
        return None
    to_full = np.full(model.n_atoms, -1, dtype=np.int64)
    to_full[order_m] = order_f
    bonds = np.asarray(restraints.bonds.atoms, dtype=np.int64).reshape(-1, 2)
    mapped = to_full[bonds]
    heavy_bond = np.all(mapped >= 0, axis=1)
    # a bond from a heavy atom to one of model's own hydrogens must be that hydrogen's riding
    # bond (it goes with the hydrogen); anything else (an atom the dictionary lacks tied to a
    # hydrogen) would be missing from the rebuilt graph
    mixed = bonds[~heavy_bond]
    if len(mixed):
        parent_m = hydrogen_parents(model.is_hydrogen, bonds)
        first_h = model.is_hydrogen[mixed[:, 0]]
        h_end = np.where(first_h, mixed[:, 0], mixed[:, 1])
        other = np.where(first_h, mixed[:, 1], mixed[:, 0])
        if np.any(~model.is_hydrogen[other] & (parent_m[h_end] != other)):
            return None
    riding = _rebuilt_hydrogen_parents(full, library)
    if riding is None:
        return None
    graph = np.concatenate([mapped[heavy_bond], riding])
    hbond = np.zeros(full.n_atoms, dtype=restraints.nonbonded.hbond_type.dtype)
    hbond[order_f] = restraints.nonbonded.hbond_type[order_m]
    excluded, pairs_14 = bonded_neighbour_pairs(full.n_atoms, graph)
    return _topology_from_graph(full, graph, hbond, excluded, pairs_14)


def _rebuilt_hydrogen_parents(full: Model, library: tuple[str | None, tuple[str, ...]]
                              ) -> np.ndarray | None:
    """(parent, hydrogen) index pairs of ``full``'s hydrogens (see
    :func:`_topology_from_heavy_atoms`), or None when one is not certain."""
    from varref.monlib import load_monomer_library

    hydrogens = np.flatnonzero(full.is_hydrogen)
    heavy = np.flatnonzero(~full.is_hydrogen)
    # the residue names the hydrogens were built with, so the library is the cached one
    residue_names = set(full.residue_name.tolist())
    monlib = load_monomer_library(residue_names, *library)
    parent_name: dict[tuple[str, str], str] = {}
    known: set[tuple[str, str]] = set()
    for residue_name in residue_names:
        if residue_name not in monlib.monomers:
            return None
        chemcomp = monlib.monomers[residue_name]
        is_h = {atom.id: atom.is_hydrogen() for atom in chemcomp.atoms}
        known.update((residue_name, name) for name in is_h)
        for bond in chemcomp.rt.bonds:
            a, b = bond.id1.atom, bond.id2.atom
            if is_h.get(a) and not is_h.get(b):
                parent_name[(residue_name, a)] = b
            elif is_h.get(b) and not is_h.get(a):
                parent_name[(residue_name, b)] = a
    # a heavy atom the dictionary lacks is tied to its nearest atom, which in the rebuilt
    # model may be a new hydrogen (3MFP's methylated HIS 73 CZ)
    if not known.issuperset(zip(full.residue_name[heavy].tolist(), full.atom_name[heavy].tolist())):
        return None
    if not len(hydrogens):
        return np.zeros((0, 2), dtype=np.int64)
    index = dict(zip(zip(full.residue_index[heavy].tolist(), full.atom_name[heavy].tolist()),
                     heavy.tolist()))
    parent = np.empty(len(hydrogens), dtype=np.int64)
    for k, (h, residue, name, residue_name) in enumerate(zip(
            hydrogens.tolist(), full.residue_index[hydrogens].tolist(),
            full.atom_name[hydrogens].tolist(), full.residue_name[hydrogens].tolist())):
        p = index.get((residue, parent_name.get((residue_name, name), "")))
        if p is None:  # a hydrogen a modification added: the heavy atom it sits on
            mates = heavy[full.residue_index[heavy] == residue]
            if not len(mates):
                return None
            distance = np.linalg.norm(full.xyz[mates] - full.xyz[h], axis=1)
            nearest = np.argsort(distance)[:2]
            if len(nearest) > 1 and distance[nearest[1]] <= NEXT_HEAVY_MIN:
                return None
            p = int(mates[nearest[0]])
        parent[k] = p
    reach = np.linalg.norm(full.xyz[parent] - full.xyz[hydrogens], axis=1)
    if not np.all(reach <= RIDING_BOND_MAX):  # also NaN: a hydrogen that could not be placed
        return None
    return np.stack([parent, hydrogens], axis=1)


def find_clashes(model: Model, overlap_cutoff: float = CLASH_OVERLAP,
                 add_hydrogens: bool = True,
                 topology: ClashTopology | None = None) -> dict[str, object]:
    """Clashscore and the list of clashing pairs (procedure in the module docstring).

    Parameters
    ----------
    model
        The model (its own hydrogens are replaced when ``add_hydrogens``).
    overlap_cutoff
        Overlap (Å) that makes a clash; MolProbity uses 0.4.
    add_hydrogens
        Rebuild riding hydrogens first (default). With False the model is used as is.
    topology
        The topology of this model at other coordinates (from :func:`clashes_and_topology`),
        to skip rebuilding the bond graph, radii and hydrogen-bond types (it is rebuilt if
        the atoms differ).

    Returns
    -------
    dict with ``clashscore``, ``n_clashes``, ``n_atoms`` (hydrogens included),
    ``n_hydrogens_added``, ``radii`` (description), ``clashes`` (list of dicts: atom labels,
    ``overlap``, ``distance``, ``residues`` (the two residue indices)), worst first.

    Raises
    ------
    InputError
        Hydrogens or bonds cannot be built (residue without dictionary).
    """
    return clashes_and_topology(model, overlap_cutoff, add_hydrogens, topology)[0]


def clashes_and_topology(model: Model, overlap_cutoff: float = CLASH_OVERLAP,
                         add_hydrogens: bool = True, topology: ClashTopology | None = None,
                         restraints: Restraints | None = None
                         ) -> tuple[dict[str, object], ClashTopology]:
    """:func:`find_clashes` and the :class:`ClashTopology` it used (``topology`` if it
    matched, else the one it built), to pass to the next call on the same model.
    ``restraints`` (of ``model``'s atoms, e.g. a refinement's) give the bond graph and
    hydrogen-bond types instead of building restraints again: as they are when the
    hydrogen-complete model has exactly ``model``'s atoms (a model that carries all its
    hydrogens), else for its heavy atoms, with each rebuilt hydrogen bonded to the heavy atom
    it sits on (:func:`_topology_from_heavy_atoms`; built when that is not certain). The
    hydrogens are built from the dictionaries the restraints came from (e.g. a ligand's
    ``--restraints``)."""
    library = dictionaries(restraints)
    full = add_riding_hydrogens(model, *library) if add_hydrogens else model
    if topology is None or not topology.matches(full):
        same_atoms = (restraints is not None and restraints.n_atoms == full.n_atoms
                      and full.n_atoms == model.n_atoms
                      and np.array_equal(full.atom_name, model.atom_name)
                      and np.array_equal(full.residue_index, model.residue_index))
        topology = None
        if restraints is not None and not same_atoms:
            topology = _topology_from_heavy_atoms(full, model, restraints, library)
        if topology is None:
            topology = _topology_of(full, restraints if same_atoms
                                    else build_restraints(full, *library))
    radius, polar_hydrogen = topology.radius, topology.polar_hydrogen
    acceptor, donor, parent = topology.acceptor, topology.donor, topology.parent

    tree = cKDTree(full.xyz)
    reach = 2.0 * float(radius.max()) - overlap_cutoff
    pairs = tree.query_pairs(reach, output_type="ndarray")
    if len(pairs):
        distance = np.linalg.norm(full.xyz[pairs[:, 0]] - full.xyz[pairs[:, 1]], axis=1)
        overlap = radius[pairs[:, 0]] + radius[pairs[:, 1]] - distance
        keep = overlap >= overlap_cutoff
        pairs, distance, overlap = pairs[keep], distance[keep], overlap[keep]
    else:
        distance = overlap = np.zeros(0)
    # bonded neighbours (1-2, 1-3 and 1-4) never clash
    bonded = topology.bonded_keys
    keep = ~np.isin(pair_keys(pairs, full.n_atoms), bonded)
    # as Probe's default (-4H): a hydrogen's 1-5 neighbours are excluded too, i.e. atoms
    # within three bonds of the hydrogen's parent
    i, j = pairs[:, 0], pairs[:, 1]
    hydrogen, other = np.where(parent[i] >= 0, i, j), np.where(parent[i] >= 0, j, i)
    via_parent = np.stack([parent[hydrogen], other], axis=1)
    involves_h = parent[hydrogen] >= 0
    keep &= ~(involves_h & (np.isin(pair_keys(np.maximum(via_parent, 0), full.n_atoms), bonded)
                            | (via_parent[:, 0] == other)))
    hydrogen_bond = (((polar_hydrogen[i] | donor[i]) & acceptor[j])
                     | ((polar_hydrogen[j] | donor[j]) & acceptor[i]))
    keep &= ~hydrogen_bond
    pairs, distance, overlap = pairs[keep], distance[keep], overlap[keep]
    order = np.argsort(-overlap)
    labels = _atom_labels(full, np.unique(pairs))
    clashes = [{
        "atom_1": labels[pairs[k, 0]], "atom_2": labels[pairs[k, 1]],
        "overlap": float(overlap[k]), "distance": float(distance[k]),
        "residues": (int(full.residue_index[pairs[k, 0]]), int(full.residue_index[pairs[k, 1]])),
    } for k in order]
    n_atoms = full.n_atoms
    return {
        "clashscore": 1000.0 * len(clashes) / n_atoms if n_atoms else float("nan"),
        "n_clashes": len(clashes),
        "n_atoms": n_atoms,
        "n_hydrogens_added": int(full.is_hydrogen.sum() - model.is_hydrogen.sum()),
        "overlap_cutoff": overlap_cutoff,
        "radii": "Probe explicit-H electron-cloud radii (Word et al. 1999)",
        "clashes": clashes,
    }, topology


def _atom_labels(model: Model, atoms: np.ndarray) -> dict[int, str]:
    """Labels ("A/ALA 12 CB") of the given atoms (those of the clashes, not all)."""
    return {int(i): f"{model.chain_id[i]}/{model.residue_name[i]} {model.residue_number[i]}"
                    f"{model.insertion_code[i].strip()} {model.atom_name[i]}" for i in atoms}
