"""Rigid-body fitting: 6 parameters per body (rotation vector about the body's centroid and a
translation) minimising the map target ``-sum_m w_m rho(x_m)``.

The gradient with respect to the rotation vector uses the closed form of Gallego & Yezzi
(2015), ``dR/dω_i = (ω_i [ω]x + [ω x (I - R) e_i]x) R / |ω|²`` (``[e_i]x R`` at ω = 0), so
scipy's L-BFGS-B gets exact derivatives. To widen the radius of convergence the fit runs
twice: first on the map blurred by B = 100 Å², then on the map itself.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.spatial.transform import Rotation

from varref.engine.map_target import map_target_value_gradient
from varref.maps import Map
from varref.model import Model


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def rotation_and_derivatives(rotation_vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R(ω) and dR/dω_i, i = 0..2, as (3, 3) and (3, 3, 3)."""
    rotation = Rotation.from_rotvec(rotation_vector).as_matrix()
    angle_squared = float(rotation_vector @ rotation_vector)
    basis = np.eye(3)
    if angle_squared < 1e-20:
        return rotation, np.array([_skew(basis[i]) @ rotation for i in range(3)])
    omega_x = _skew(rotation_vector)
    derivatives = np.array([
        (rotation_vector[i] * omega_x
         + _skew(np.cross(rotation_vector, (np.eye(3) - rotation) @ basis[i]))) @ rotation
        / angle_squared
        for i in range(3)
    ])
    return rotation, derivatives


def _fit(xyz: np.ndarray, bodies: list[np.ndarray], density: Map, map_weights: np.ndarray,
         max_iterations: int) -> np.ndarray:
    centres = [xyz[body].mean(axis=0) for body in bodies]

    def apply(parameters):
        moved = xyz.copy()
        derivatives = []
        for k, body in enumerate(bodies):
            omega, shift = parameters[6 * k:6 * k + 3], parameters[6 * k + 3:6 * k + 6]
            rotation, d_rotation = rotation_and_derivatives(omega)
            local = xyz[body] - centres[k]
            moved[body] = local @ rotation.T + centres[k] + shift
            derivatives.append((local, d_rotation))
        return moved, derivatives

    def objective(parameters):
        moved, derivatives = apply(parameters)
        value, gradient = map_target_value_gradient(density.data, density.origin,
                                                    density.voxel_size, moved, map_weights)
        result = np.zeros_like(parameters)
        for k, body in enumerate(bodies):
            local, d_rotation = derivatives[k]
            g = gradient[body]
            for i in range(3):
                result[6 * k + i] = np.sum(g * (local @ d_rotation[i].T))
            result[6 * k + 3:6 * k + 6] = g.sum(axis=0)
        return value, result

    found = minimize(objective, np.zeros(6 * len(bodies)), jac=True, method="L-BFGS-B",
                     options={"maxiter": max_iterations})
    return apply(found.x)[0]


def rigid_body_fit(model: Model, xyz: np.ndarray, density: Map, map_weights: np.ndarray,
                   per_chain: bool = False, max_iterations: int = 200,
                   blur: float = 100.0, blurred: Map | None = None) -> np.ndarray:
    """Rigid-body fit of the whole model (or of each chain) into ``density``.

    ``blurred`` is the first stage's map when the caller already has it (a pixel-size scan
    blurs once and rescales it with every trial); otherwise it is made here with ``blur``.
    Returns the fitted coordinates; restraints are untouched by rigid motions.
    """
    if per_chain:
        bodies = [np.flatnonzero(model.chain_id == chain) for chain in dict.fromkeys(model.chain_id.tolist())]
    else:
        bodies = [np.arange(model.n_atoms)]
    if blurred is None:
        blurred = density.blurred(blur).normalised() if blur > 0 else density
    fitted = _fit(xyz, bodies, blurred, map_weights, max_iterations)
    return _fit(fitted, bodies, density, map_weights, max_iterations)
