"""The refinement target ``T = w T_map + T_restraints`` for K coordinate sets of one topology.

This is the only place where map and restraint terms meet. The object holds the state
(neighbour lists, fixed atoms, weights); the arithmetic is the engine's batched kernels.
"""

from __future__ import annotations

import numpy as np

from varref.engine.map_target import map_target_value_gradient_batched
from varref.engine.neighbours import BatchNonbondedPairs
from varref.engine.restraint_target import PackedRestraints, restraint_values_and_gradients_batch
from varref.maps import Map


class RefinementTarget:
    """Value and gradient of ``w_k T_map(x_k) + T_restraints(x_k)`` for problems k = 0..K-1.

    Parameters
    ----------
    packed
        Packed restraints of the topology (``pack_restraints``).
    density
        Target map (normalised, orthogonal); None for geometry regularisation alone.
    map_weights
        (N,) per-atom weights of the map target (0 for hydrogens, which then follow their
        restraints only and never pull on the map).
    weights
        (K,) data weight w of each problem.
    start
        (K, N, 3) starting coordinates; atoms that do not move keep these.
    moving
        (N,) bool, the atoms refined (default all).
    method
        Map interpolation, ``"tricubic"`` (default) or ``"trilinear"``.
    """

    def __init__(self, packed: PackedRestraints, density: Map | None, map_weights: np.ndarray,
                 weights: np.ndarray, start: np.ndarray, moving: np.ndarray | None = None,
                 method: str = "tricubic") -> None:
        self.packed = packed
        self.density = density
        if density is not None:
            density.require_orthogonal()
        self.map_weights = np.ascontiguousarray(map_weights, dtype=np.float64)
        self.weights = np.asarray(weights, dtype=np.float64).reshape(-1)
        self.start = np.array(start, dtype=np.float64, copy=True)
        if self.start.ndim == 2:
            self.start = self.start[np.newaxis]
        n_problems, n_atoms, _ = self.start.shape
        if len(self.weights) == 1 and n_problems > 1:
            self.weights = np.repeat(self.weights, n_problems)
        if len(self.weights) != n_problems:
            raise ValueError(f"{len(self.weights)} weights for {n_problems} problems")
        self.moving = np.ones(n_atoms, bool) if moving is None else np.asarray(moving, bool)
        self.method = method
        self.neighbour_lists = [packed.neighbour_list() for _ in range(n_problems)]
        self.evaluations = 0

    @property
    def n_problems(self) -> int:
        return self.start.shape[0]

    def pack(self, xyz: np.ndarray) -> np.ndarray:
        """(K, N, 3) coordinates → (K, 3 n_moving) minimiser variables."""
        return np.ascontiguousarray(xyz[:, self.moving].reshape(len(xyz), -1))

    def unpack(self, x: np.ndarray, members: np.ndarray) -> np.ndarray:
        """Minimiser variables of ``members`` → full (k, N, 3) coordinates."""
        xyz = self.start[members].copy()
        xyz[:, self.moving] = x.reshape(len(members), -1, 3)
        return xyz

    def __call__(self, x: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xyz = self.unpack(x, members)
        values, gradient = self.evaluate(xyz, members)
        return values, np.ascontiguousarray(gradient[:, self.moving].reshape(len(members), -1))

    def evaluate(self, xyz: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Total value (k,) and gradient (k, N, 3) for full coordinates of ``members``."""
        self.evaluations += 1
        pair_lists = [self.neighbour_lists[k].update(xyz[i]) for i, k in enumerate(members)]
        offsets = np.zeros(len(members) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(p) for p in pair_lists])
        pairs = BatchNonbondedPairs(
            np.concatenate([p.pairs for p in pair_lists]) if pair_lists else np.zeros((0, 2), np.int64),
            np.concatenate([p.contact for p in pair_lists]) if pair_lists else np.zeros(0),
            offsets,
        )
        restraint_values, restraint_gradient = restraint_values_and_gradients_batch(xyz, self.packed, pairs)
        if self.density is None:
            return restraint_values, restraint_gradient
        map_values, map_gradient = map_target_value_gradient_batched(
            self.density.data, self.density.origin, self.density.voxel_size, xyz,
            self.map_weights, self.method)
        w = self.weights[members]
        return w * map_values + restraint_values, w[:, None, None] * map_gradient + restraint_gradient
