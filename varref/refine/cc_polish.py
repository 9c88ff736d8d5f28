"""Final polishing with the density-correlation target (paper's eq. 5, normalised).

    T = w_cc · (−CC(ρ_model(x), ρ_target)) + T_restraints(x),

with CC over the molecular mask of the starting coordinates (fixed during the stage) and
ρ_model the Gaussian model map at the refinement's resolution. The scale w_cc is chosen so
that the data term pulls as hard as the atom-centred map term did at the same coordinates:
``w_cc = w · |∇T_map| / |∇(−CC)|`` (gradient norms over the heavy atoms). A correlation
target accounts for overlapping atoms, which the atom-centred target cannot (Appendix A),
at ~300× the cost per evaluation, so it runs as a short last stage.
"""

from __future__ import annotations

import numpy as np

from varref.engine.cc_target import cc_target_value_gradient
from varref.engine.correlation import mask_radii, molecular_mask
from varref.engine.map_target import map_target_value_gradient
from varref.engine.model_map import resolution_blur, scattering_coefficients
from varref.engine.restraint_target import PackedRestraints, restraint_value_and_gradient
from varref.maps import Map
from varref.model import Model
from varref.refine.lbfgs import minimise_lbfgs


def polish_with_cc(model: Model, xyz: np.ndarray, packed: PackedRestraints, density: Map,
                   resolution: float, weight: float, map_weights: np.ndarray,
                   iterations: int = 50, max_step: float = 0.2) -> np.ndarray:
    """Minimise ``w_cc (−CC) + T_restraints`` from ``xyz``; returns the polished coordinates."""
    heavy = ~model.is_hydrogen
    coeff_a, coeff_b = scattering_coefficients(model.element[heavy])
    blur = resolution_blur(resolution)
    mask = molecular_mask(xyz[heavy], mask_radii(model.element[heavy]), density.data.shape,
                          density.origin, density.voxel_size)
    b_iso, occupancy = model.b_iso[heavy], model.occupancy[heavy]

    def cc_term(coordinates: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad_heavy = cc_target_value_gradient(
            coordinates[heavy], density.data, density.origin, density.voxel_size, mask,
            coeff_a, coeff_b, b_iso, occupancy, blur)
        gradient = np.zeros_like(coordinates)
        gradient[heavy] = grad_heavy
        return value, gradient

    _, map_gradient = map_target_value_gradient(density.data, density.origin, density.voxel_size,
                                                xyz, map_weights)
    _, cc_gradient = cc_term(xyz)
    cc_norm = np.linalg.norm(cc_gradient[heavy])
    if cc_norm == 0.0:
        return xyz
    cc_weight = weight * np.linalg.norm(map_gradient[heavy]) / cc_norm
    neighbours = packed.neighbour_list()

    def objective(x: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        coordinates = x.reshape(-1, 3)
        cc_value, cc_grad = cc_term(coordinates)
        restraint_value, restraint_grad = restraint_value_and_gradient(
            coordinates, packed, neighbours.update(coordinates))
        total_gradient = cc_weight * cc_grad + restraint_grad
        return (np.array([cc_weight * cc_value + restraint_value]),
                total_gradient.reshape(1, -1))

    result = minimise_lbfgs(objective, xyz.reshape(1, -1), max_iterations=iterations,
                            max_step=max_step)
    return result.x.reshape(-1, 3)
