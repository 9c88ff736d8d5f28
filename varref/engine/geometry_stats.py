"""Geometry statistics of a model against its restraints: r.m.s. deviations, maxima, outliers.

The one place that computes restraint deviations for reports (``varref validate``,
``varref restraints``, refinement metrics). Residuals are in the units of each restraint
(bonds and planes Å, angles and torsions degrees, chiral volumes Å^3) and are exactly the
residuals the refinement target uses: torsions wrapped to the nearest periodic minimum,
chirals with the both-signs rule, planes as atom distances to the least-squares plane.

Bond and angle figures follow MolProbity's default: ``bonds`` and ``angles`` cover only
restraints among heavy atoms, since X-H lengths depend on whether the model puts H at the
nucleus or at the electron cloud; ``bonds_with_h`` and ``angles_with_h`` cover all of them.
Torsions, chiral volumes and planes cover all their restraints.
"""

from __future__ import annotations

import numpy as np

from varref.engine.angles import angle_values
from varref.engine.bonds import bond_lengths
from varref.engine.chirals import chiral_deltas
from varref.engine.planes import plane_deviations
from varref.engine.restraint_target import pack_kernel_arrays
from varref.engine.torsions import torsion_deltas
from varref.restraints.arrays import Restraints

#: A residual beyond this many sigmas is an outlier (MolProbity's threshold).
OUTLIER_SIGMA = 4.0


def _statistics(delta: np.ndarray, weight: np.ndarray) -> dict[str, float]:
    """Statistics of residuals ``delta`` whose restraints have weights 1/sigma^2."""
    if delta.size == 0:
        return {"n": 0, "rmsd": 0.0, "max_deviation": 0.0, "rms_z": 0.0,
                "n_outliers_4sigma": 0}
    z = delta * np.sqrt(weight)
    return {
        "n": int(delta.size),
        "rmsd": float(np.sqrt(np.mean(delta * delta))),
        "max_deviation": float(np.max(np.abs(delta))),
        "rms_z": float(np.sqrt(np.mean(z * z))),
        "n_outliers_4sigma": int(np.count_nonzero(np.abs(z) > OUTLIER_SIGMA)),
    }


def geometry_statistics(xyz: np.ndarray, restraints: Restraints) -> dict[str, dict[str, float]]:
    """Deviations of a model from its restraints, per restraint kind.

    Parameters
    ----------
    xyz : (N, 3) array
        Coordinates in Å, atom order of ``restraints``.
    restraints : Restraints
        Hydrogens are recognised by ``restraints.nonbonded.is_hydrogen``.

    Returns
    -------
    dict
        ``bonds``, ``angles`` (restraints among heavy atoms), ``bonds_with_h``,
        ``angles_with_h`` (all), ``torsions``, ``chirals``, ``planes`` (one residual per
        plane atom), each ``{"n", "rmsd", "max_deviation", "rms_z", "n_outliers_4sigma"}``:
        count, r.m.s. and largest absolute residual, r.m.s. of residual/sigma, and the
        number of residuals beyond :data:`OUTLIER_SIGMA` sigmas.

    Raises
    ------
    ValueError
        Coordinates or hydrogen flags do not match the restraints, or the restraints are
        malformed (see :func:`~varref.engine.restraint_target.pack_kernel_arrays`).
    """
    n = int(restraints.n_atoms)
    xyz = np.ascontiguousarray(xyz, dtype=np.float64)
    if xyz.shape != (n, 3):
        raise ValueError(f"coordinates of shape {xyz.shape}, restraints are for ({n}, 3)")
    is_hydrogen = np.asarray(restraints.nonbonded.is_hydrogen, dtype=bool)
    if is_hydrogen.shape != (n,):
        raise ValueError(f"nonbonded.is_hydrogen has shape {is_hydrogen.shape}, expected ({n},)")
    r = pack_kernel_arrays(restraints)  # validated indices: the kernels do no bounds checks
    bond_delta = bond_lengths(xyz, r.bond_atoms) - r.bond_ideal
    angle_delta = angle_values(xyz, r.angle_atoms) - r.angle_ideal
    heavy_bond = ~is_hydrogen[r.bond_atoms].any(axis=1)
    heavy_angle = ~is_hydrogen[r.angle_atoms].any(axis=1)
    return {
        "bonds": _statistics(bond_delta[heavy_bond], r.bond_weight[heavy_bond]),
        "angles": _statistics(angle_delta[heavy_angle], r.angle_weight[heavy_angle]),
        "bonds_with_h": _statistics(bond_delta, r.bond_weight),
        "angles_with_h": _statistics(angle_delta, r.angle_weight),
        "torsions": _statistics(
            torsion_deltas(xyz, r.torsion_atoms, r.torsion_ideal, r.torsion_period),
            r.torsion_weight),
        "chirals": _statistics(
            chiral_deltas(xyz, r.chiral_atoms, r.chiral_ideal, r.chiral_both_signs),
            r.chiral_weight),
        "planes": _statistics(plane_deviations(xyz, r.plane_atoms, r.plane_offsets),
                              np.repeat(r.plane_weight, np.diff(r.plane_offsets))),
    }
