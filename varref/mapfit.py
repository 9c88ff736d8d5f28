"""Map–model correlation of a model on a map, as Phenix reports it (CC_mask, CC_box, ...).

One implementation for refinement logs, validation reports, ensembles and series:
the model map is computed on the target map's grid at the given resolution
(:func:`varref.simulate.model_density`, heavy atoms: hydrogens are left out of the model map
and the mask, as they are out of the map target); the CC_mask region is the cctbx-style
molecular mask (:func:`varref.engine.correlation.molecular_mask`: vdW-like radius + 1.1 Å,
shrunk by 0.9 Å). Per-residue and per-chain CCs use the points within each atom's
vdW-like radius + 0.2 Å.
"""

from __future__ import annotations

import numpy as np

from varref.engine.correlation import (
    SHRINK_RADIUS,
    SOLVENT_RADIUS,
    cc_box,
    cc_mask,
    cc_peaks,
    cc_volume,
    map_model_cc,
    mask_radii,
    molecular_mask,
    per_chain_cc,
    per_group_cc,
)
from varref.maps import Map
from varref.model import Model
from varref.simulate import model_density


def correlations(model: Model, xyz: np.ndarray, density: Map, resolution: float,
                 per_residue: bool = False,
                 which: tuple[str, ...] = ("cc_mask", "cc_box", "cc_volume", "cc_peaks"),
                 ) -> dict[str, object]:
    """CC_mask, CC_box, CC_volume, CC_peaks of coordinates ``xyz`` against ``density``.

    ``which`` limits the global CCs computed (CC_volume and CC_peaks sort the whole map, the
    dominant cost on large maps when only CC_mask is needed, as in a pixel-size scan).

    With ``per_residue`` also ``per_residue_cc`` ((n_residues,) list, NaN where a residue
    covers fewer than 2 grid points or has no heavy atom), ``per_chain_cc`` (chain → CC) and
    ``n_mask_points``.
    """
    density.require_orthogonal()
    heavy = ~model.is_hydrogen
    calculated = model_density(model, xyz, density, resolution)
    radii = mask_radii(model.element[heavy])
    mask = molecular_mask(xyz[heavy], radii, density.data.shape, density.origin, density.voxel_size)
    if set(which) >= {"cc_volume", "cc_peaks"}:
        result: dict[str, object] = dict(map_model_cc(calculated, density.data, mask))
    else:
        every = {"cc_mask": lambda: cc_mask(calculated, density.data, mask),
                 "cc_box": lambda: cc_box(calculated, density.data),
                 "cc_volume": lambda: cc_volume(calculated, density.data, int(mask.sum())),
                 "cc_peaks": lambda: cc_peaks(calculated, density.data, int(mask.sum()))}
        result = {name: float(every[name]()) for name in which}
    if not per_residue:
        return result
    local_radii = radii + SOLVENT_RADIUS - SHRINK_RADIUS
    residue_cc = per_group_cc(calculated, density.data, density.origin, density.voxel_size,
                              xyz[heavy], local_radii, model.residue_index[heavy],
                              n_groups=model.n_residues)
    chains, chain_cc = per_chain_cc(calculated, density.data, density.origin, density.voxel_size,
                                    xyz[heavy], local_radii, model.chain_id[heavy])
    result.update({
        "n_mask_points": int(mask.sum()),
        "per_residue_cc": [float(v) for v in residue_cc],
        "per_chain_cc": {str(c): float(v) for c, v in zip(chains, chain_cc)},
    })
    return result
