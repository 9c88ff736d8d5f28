"""The atom-centred map target of phenix.real_space_refine (Afonine et al. 2018, eq. 7):
``T_map = -Σ_m w_m ρ(x_m)``, ρ read by tricubic (or trilinear) interpolation. Hydrogens
have w_m = 0: they follow their restraints and never pull on the map."""

from __future__ import annotations

import numpy as np

from varref.engine import fused_lbfgs
from varref.engine.interpolation import as_kernel_grid, interpolation_method_code
from varref.engine.map_target import map_target_value_gradient_batched, map_target_weights
from varref.maps import Map
from varref.refinement.terms.base import DATA, TermSetup


class MapValueTerm:
    """Minus the weighted sum of map values at the atoms, for K coordinate sets."""

    name = "map_value"
    kind = DATA

    def __init__(self, density: Map, atom_weights: np.ndarray, method: str = "tricubic") -> None:
        density.require_orthogonal()
        self.density = density
        self.atom_weights = np.ascontiguousarray(atom_weights, dtype=np.float64)
        self.method = method

    def evaluate(self, xyz: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = self.density
        return map_target_value_gradient_batched(d.data, d.origin, d.voxel_size, xyz,
                                                 self.atom_weights, self.method)

    def fused_slot(self) -> tuple[int, tuple]:
        """Kind and kernel arguments for the fused trial minimiser (:mod:`varref.engine.fused_lbfgs`)."""
        d = self.density
        data, origin, voxel_size = as_kernel_grid(d.data, d.origin, d.voxel_size)
        return fused_lbfgs.MAP, (data, origin, voxel_size, self.atom_weights,
                                 interpolation_method_code(self.method))

    def subset(self, atoms: np.ndarray) -> "MapValueTerm":
        return MapValueTerm(self.density, self.atom_weights[atoms], self.method)


def build(setup: TermSetup) -> MapValueTerm | None:
    if setup.density is None:
        return None
    model = setup.model
    return MapValueTerm(setup.density, map_target_weights(model.atomic_number, model.is_hydrogen),
                        setup.options.interpolation)
