"""Map–model correlation of a model on a map, as Phenix reports it (CC_mask, CC_box, ...).

The model map is computed on the target map's grid at the given resolution
(:func:`varref.simulate.model_density`); the CC_mask region is the cctbx-style molecular mask
of the model's heavy atoms (:func:`varref.engine.correlation.molecular_mask`).
"""

from __future__ import annotations

import numpy as np

from varref.engine.correlation import map_model_cc, mask_radii, molecular_mask, per_residue_cc
from varref.maps import Map
from varref.model import Model
from varref.simulate import model_density


def correlations(model: Model, xyz: np.ndarray, density: Map, resolution: float) -> dict[str, float]:
    """CC_mask, CC_box, CC_volume, CC_peaks of coordinates ``xyz`` against ``density``."""
    heavy = ~model.is_hydrogen
    calculated = model_density(model, xyz, density, resolution)
    mask = molecular_mask(xyz[heavy], mask_radii(model.element[heavy]), density.data.shape,
                          density.origin, density.voxel_size)
    return map_model_cc(calculated, density.data, mask)


def residue_correlations(model: Model, xyz: np.ndarray, density: Map, resolution: float) -> np.ndarray:
    """One CC per residue (NaN for hydrogens-only residues), over points near its atoms."""
    heavy = ~model.is_hydrogen
    calculated = model_density(model, xyz, density, resolution)
    radii = mask_radii(model.element[heavy])
    group = model.residue_index[heavy]
    return per_residue_cc(calculated, density.data, density.origin, density.voxel_size,
                          xyz[heavy], radii, group) if heavy.any() else np.zeros(0)
