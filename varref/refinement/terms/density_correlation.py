"""Density correlation (paper's eq. 5, normalised): ``T = s_k · (−CC(ρ_model(x_k), ρ_target))``.

CC runs over the molecular mask of each problem's coordinates when the term is built (fixed
while the term lives), with ρ_model the Gaussian model map of the heavy atoms at the
refinement's resolution. The per-problem scale ``s_k = |∇T_map| / |∇(−CC)|`` (gradient norms
over the heavy atoms at the build coordinates) makes the term pull as hard as the
atom-centred map term did, so the same data weight w serves both. A correlation target
accounts for overlapping atoms, which the atom-centred target cannot (Appendix A), at a
much higher cost per evaluation: the pipeline runs it as a short last stage. Each problem's
map and mask are prepared once (cut to the mask's box), and the atoms' Gaussians are merged
(``model_map.merged_coefficients``, within 2 % of each atom's profile at its B).
"""

from __future__ import annotations

import numpy as np

from varref.engine.cc_target import cc_value_gradient, correlation_data
from varref.engine.correlation import mask_radii, molecular_mask
from varref.engine.map_target import map_target_value_gradient, map_target_weights
from varref.engine.model_map import merged_coefficients, resolution_blur, scattering_coefficients
from varref.refinement.terms.base import DATA, TermSetup


class DensityCorrelationTerm:
    """Scaled negative correlation of model and target map, one fixed mask per problem."""

    name = "density_correlation"
    kind = DATA

    def __init__(self, setup: TermSetup) -> None:
        model, density = setup.model, setup.density
        self.density = density
        self.heavy = ~model.is_hydrogen
        self.blur = resolution_blur(setup.options.resolution)
        n_problems = len(setup.start)
        b_iso = (np.repeat(model.b_iso[np.newaxis], n_problems, axis=0) if setup.b_iso is None
                 else np.asarray(setup.b_iso, dtype=np.float64))
        self.b_iso = [b[self.heavy] for b in b_iso]  # per problem (B refinement may differ)
        narrowest = min((float(b.min()) for b in self.b_iso if b.size), default=0.0)
        self.coeff_a, self.coeff_b = merged_coefficients(
            *scattering_coefficients(model.element[self.heavy]),
            extra_b=max(narrowest, 0.0) + self.blur)
        self.occupancy = model.occupancy[self.heavy]
        radii = mask_radii(model.element[self.heavy])
        map_weights = map_target_weights(model.atomic_number, model.is_hydrogen)
        self.correlation, self.scales = [], []
        for k, xyz in enumerate(setup.start):
            mask = molecular_mask(xyz[self.heavy], radii, density.data.shape, density.origin,
                                  density.voxel_size)
            self.correlation.append(correlation_data(density.data, density.origin, density.voxel_size,
                                               mask))
            _, map_gradient = map_target_value_gradient(density.data, density.origin,
                                                        density.voxel_size, xyz, map_weights)
            _, cc_gradient = self._one(xyz, self.correlation[k], k)
            cc_norm = np.linalg.norm(cc_gradient[self.heavy])
            # a model with no heavy atom in the map has no CC gradient: the term is then zero
            self.scales.append(np.linalg.norm(map_gradient[self.heavy]) / cc_norm if cc_norm > 0 else 0.0)

    def _one(self, xyz: np.ndarray, data, k: int) -> tuple[float, np.ndarray]:
        value, grad_heavy = cc_value_gradient(xyz[self.heavy], data, self.coeff_a, self.coeff_b,
                                              self.b_iso[k], self.occupancy, self.blur)
        gradient = np.zeros_like(xyz)
        gradient[self.heavy] = grad_heavy
        return value, gradient

    def evaluate(self, xyz: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        values = np.zeros(len(members))
        gradient = np.zeros_like(xyz)
        for i, k in enumerate(members):
            if self.scales[k] == 0.0:
                continue
            value, grad = self._one(xyz[i], self.correlation[k], k)
            values[i], gradient[i] = self.scales[k] * value, self.scales[k] * grad
        return values, gradient

    def subset(self, atoms: np.ndarray) -> None:
        """Not supported: the correlation of a segment depends on its environment's density,
        and the weight search uses the atom-centred term only."""
        raise NotImplementedError("the density-correlation term is not used on atom subsets")


def build(setup: TermSetup) -> DensityCorrelationTerm | None:
    return None if setup.density is None else DensityCorrelationTerm(setup)
