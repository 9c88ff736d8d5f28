"""Deviations of a model from its restraints' ideal values, for reports and input checks.

Bond lengths (Å) and angles (degrees) come from the engine's kernels; this module only
summarises them for reports.
"""

from __future__ import annotations

import numpy as np

from varref.engine.angles import angle_values as bond_angles
from varref.engine.bonds import bond_lengths
from varref.restraints.arrays import Restraints

__all__ = ["bond_angles", "bond_lengths", "deviation_summary"]


def _stats(delta: np.ndarray, sigma: np.ndarray) -> dict[str, float]:
    if len(delta) == 0:
        return {"n": 0, "rmsd": 0.0, "max": 0.0, "fraction_within_4_sigma": 1.0}
    return {
        "n": int(len(delta)),
        "rmsd": float(np.sqrt(np.mean(delta**2))),
        "max": float(np.max(np.abs(delta))),
        "fraction_within_4_sigma": float(np.mean(np.abs(delta / sigma) < 4.0)),
    }


def deviation_summary(xyz: np.ndarray, restraints: Restraints,
                      is_hydrogen: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """r.m.s./max deviation and share within 4 sigma for bonds and angles.

    With ``is_hydrogen`` the restraints that involve no hydrogen are reported separately
    (``bonds_heavy``, ``angles_heavy``), the figures validation tools quote.
    """
    bonds, angles = restraints.bonds, restraints.angles
    bond_delta = bond_lengths(xyz, bonds.atoms) - bonds.ideal
    angle_delta = bond_angles(xyz, angles.atoms) - angles.ideal
    summary = {"bonds": _stats(bond_delta, bonds.sigma), "angles": _stats(angle_delta, angles.sigma)}
    if is_hydrogen is not None:
        heavy_bond = ~is_hydrogen[bonds.atoms].any(axis=1)
        heavy_angle = ~is_hydrogen[angles.atoms].any(axis=1)
        summary["bonds_heavy"] = _stats(bond_delta[heavy_bond], bonds.sigma[heavy_bond])
        summary["angles_heavy"] = _stats(angle_delta[heavy_angle], angles.sigma[heavy_angle])
    return summary
