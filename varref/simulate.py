"""Simulated maps from models: for tests, benchmarks, the demo and users (``varref simulate-map``).

The model map is the engine's real-space sum of electron-scattering Gaussians
(:mod:`varref.engine.model_map`), blurred to the requested resolution by ``B = 4 d²``;
optional Gaussian noise is added at a signal-to-noise ratio defined as
``SNR = var(signal within the molecular mask) / var(noise)``.
"""

from __future__ import annotations

import numpy as np

from varref.engine.model_map import model_map, resolution_blur, scattering_coefficients
from varref.maps import Map
from varref.model import Model


def grid_around(xyz: np.ndarray, voxel_size: float, margin: float) -> Map:
    """An empty orthogonal grid (cubic voxels) covering the points plus ``margin`` Å."""
    low = np.floor((xyz.min(axis=0) - margin) / voxel_size) * voxel_size
    high = xyz.max(axis=0) + margin
    shape_xyz = np.ceil((high - low) / voxel_size).astype(int) + 1
    return Map(np.zeros(tuple(shape_xyz[::-1]), np.float32), low, [voxel_size] * 3, [90, 90, 90])


def model_density(model: Model, xyz: np.ndarray, grid: Map, resolution: float,
                  b_extra: float = 0.0, include_hydrogens: bool = False) -> np.ndarray:
    """The model map of ``model`` at coordinates ``xyz`` on ``grid``'s lattice, (nz, ny, nx)."""
    use = np.ones(model.n_atoms, bool) if include_hydrogens else ~model.is_hydrogen
    coeff_a, coeff_b = scattering_coefficients(model.element[use])
    return model_map(xyz[use], grid.data.shape, grid.origin, grid.voxel_size, coeff_a, coeff_b,
                     model.b_iso[use], model.occupancy[use],
                     blur=resolution_blur(resolution) + b_extra)


def simulate_map(model: Model, resolution: float, voxel_size: float | None = None,
                 margin: float = 6.0, b_extra: float = 0.0, snr: float | None = None,
                 seed: int = 0, b_iso: float | None = None, xyz: np.ndarray | None = None,
                 grid: Map | None = None) -> Map:
    """A map of ``model`` at ``resolution`` Å on a box around it.

    Parameters
    ----------
    voxel_size
        Default ``resolution / 3`` (Phenix's model-map sampling), at most 1 Å.
    b_extra
        Extra B (Å²) added to every atom on top of the resolution blur.
    snr
        Signal-to-noise ratio of added white Gaussian noise (None: noise-free).
    b_iso
        Override every atom's B (e.g. 0 for a sharp reference); default: the model's B.
    xyz
        Coordinates to use instead of the model's (e.g. one frame of a motion).
    grid
        A map whose grid (shape, origin, voxel size) the result shares, so that the maps of
        a series line up; ``voxel_size`` and ``margin`` are then ignored.
    """
    xyz = model.xyz if xyz is None else np.asarray(xyz, dtype=np.float64)
    if grid is None:
        if voxel_size is None:
            voxel_size = min(resolution / 3.0, 1.0)
        grid = grid_around(xyz, voxel_size, margin)
    source = model if b_iso is None else _with_b(model, b_iso)
    data = model_density(source, xyz, grid, resolution, b_extra)
    if snr is not None:
        signal_variance = float(np.var(data[data > 0.05 * data.max()]))
        noise = np.random.default_rng(seed).normal(scale=np.sqrt(signal_variance / snr), size=data.shape)
        data = data + noise.astype(np.float32)
    return Map(data, grid.origin, grid.voxel_size, grid.cell_angles,
               source=f"simulated from {model.source} at {resolution} Å")


def _with_b(model: Model, b_iso: float) -> Model:
    from dataclasses import replace

    return replace(model, b_iso=np.full(model.n_atoms, float(b_iso)))
