"""Deviations of a model from its restraints' ideal values, for reports and input checks.

Plain numpy over the restraint arrays (bonds in Å, angles in degrees); the refinement's
target and gradients live in :mod:`varref.engine`.
"""

from __future__ import annotations

import numpy as np

from varref.restraints.arrays import Restraints


def bond_lengths(xyz: np.ndarray, atoms: np.ndarray) -> np.ndarray:
    """Distances (Å) between the atom pairs ``atoms`` (n, 2)."""
    return np.linalg.norm(xyz[atoms[:, 1]] - xyz[atoms[:, 0]], axis=1)


def bond_angles(xyz: np.ndarray, atoms: np.ndarray) -> np.ndarray:
    """Angles (degrees) at the middle atom of each triple in ``atoms`` (n, 3)."""
    u = xyz[atoms[:, 0]] - xyz[atoms[:, 1]]
    v = xyz[atoms[:, 2]] - xyz[atoms[:, 1]]
    cosine = np.einsum("ij,ij->i", u, v) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1))
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


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
