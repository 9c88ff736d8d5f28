"""Facts read off the bond graph: bonded-neighbour pairs, hydrogens' parents, pair keys.

One definition each, shared by the restraint builder (non-bonded exclusions), the clash
search (which hydrogen rides on which atom, which pairs are bonded) and the B-factor stage
(hydrogens take their parent's B).
"""

from __future__ import annotations

import numpy as np

__all__ = ["bonded_neighbour_pairs", "hydrogen_parents", "pair_keys"]


def pair_keys(pairs: np.ndarray, n_atoms: int) -> np.ndarray:
    """One int64 key per atom pair, whatever its order: ``i * n_atoms + j`` with i <= j.

    Keys of two pair lists can be compared with :func:`numpy.isin` (e.g. a contact list
    against the excluded bonded pairs)."""
    pairs = np.sort(np.asarray(pairs, dtype=np.int64).reshape(-1, 2), axis=1)
    return pairs[:, 0] * n_atoms + pairs[:, 1]


def hydrogen_parents(is_hydrogen: np.ndarray, bond_atoms: np.ndarray) -> np.ndarray:
    """The atom each hydrogen rides on: its first bonded non-hydrogen atom in bond order.

    Parameters
    ----------
    is_hydrogen : (N,) bool
    bond_atoms : (B, 2) int
        Bonded atom pairs (e.g. ``restraints.bonds.atoms``).

    Returns
    -------
    (N,) int64
        Parent index of every hydrogen bonded to a heavy atom; -1 for heavy atoms and for
        hydrogens without a heavy neighbour.
    """
    is_hydrogen = np.asarray(is_hydrogen, dtype=bool)
    parent = np.full(len(is_hydrogen), -1, dtype=np.int64)
    bonds = np.asarray(bond_atoms, dtype=np.int64).reshape(-1, 2)
    # both directions of every bond in bond order (bond b's ends at 2b and 2b + 1)
    ends, partners = bonds.reshape(-1), bonds[:, ::-1].reshape(-1)
    riding = is_hydrogen[ends] & ~is_hydrogen[partners]
    ends, partners = ends[riding], partners[riding]
    first_of, first_index = np.unique(ends, return_index=True)
    parent[first_of] = partners[first_index]
    return parent


def bonded_neighbour_pairs(n_atoms: int, bond_atoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(1-2 ∪ 1-3 pairs, 1-4 pairs) from the bond graph, each as sorted (m, 2) with i < j.

    With A the adjacency matrix, the 1-3 pairs are the off-diagonal non-zeros of A² and the
    1-4 pairs those of A³ that are not 1-2 or 1-3 pairs: a walk i-j-k-m that turns back on
    itself (k = i or m = j) ends on a bonded pair, which is excluded anyway, so A³ holds
    exactly the ends of the bond paths i-j-k-m besides those."""
    from scipy import sparse  # loaded already by scipy.spatial; kept out of `import varref`

    bonds = np.asarray(bond_atoms, dtype=np.int64).reshape(-1, 2)
    rows = np.concatenate([bonds[:, 0], bonds[:, 1]])
    cols = np.concatenate([bonds[:, 1], bonds[:, 0]])
    adjacency = sparse.csr_matrix((np.ones(len(rows), dtype=np.int64), (rows, cols)),
                                  shape=(n_atoms, n_atoms))
    two = adjacency @ adjacency
    three = two @ adjacency

    def upper_pairs(matrix) -> np.ndarray:
        upper = sparse.triu(matrix, k=1).tocoo()
        return np.stack([upper.row.astype(np.int64), upper.col.astype(np.int64)], axis=1)

    def sorted_unique(pairs: np.ndarray) -> np.ndarray:
        if not len(pairs):
            return np.zeros((0, 2), np.int64)
        return np.unique(pairs, axis=0)  # lexicographic, as sorted() of tuples

    close = sorted_unique(np.concatenate([np.sort(bonds, axis=1), upper_pairs(two)]))
    fourth = upper_pairs(three)
    if len(fourth) and len(close):
        fourth = fourth[~np.isin(pair_keys(fourth, n_atoms), pair_keys(close, n_atoms))]
    return close, sorted_unique(fourth)
