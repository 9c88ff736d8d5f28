"""Geometry edits for constructing validation test cases: set a backbone or side-chain
dihedral by rotating the atoms on one side of its central bond."""

from __future__ import annotations

import numpy as np

from varref.model import Model
from varref.validation.residues import ResidueTable, dihedrals_of

BACKBONE_AND_CB = {"N", "CA", "C", "O", "OXT", "CB", "H", "HA", "HA2", "HA3"}


def rotate_about_axis(points: np.ndarray, origin: np.ndarray, direction: np.ndarray,
                      angle_deg: float) -> np.ndarray:
    """Rotate points (m, 3) by angle_deg about the line through origin along direction."""
    k = direction / np.linalg.norm(direction)
    theta = np.radians(angle_deg)
    v = points - origin
    rotated = (v * np.cos(theta) + np.cross(k, v) * np.sin(theta)
               + np.outer(v @ k, k) * (1.0 - np.cos(theta)))
    return rotated + origin


def _set_dihedral(model: Model, quadruple: list[int], moving: np.ndarray,
                  target_deg: float) -> Model:
    xyz = model.xyz.copy()
    current = float(dihedrals_of(xyz, np.array([quadruple]))[0])
    axis_from, axis_to = xyz[quadruple[1]], xyz[quadruple[2]]
    xyz[moving] = rotate_about_axis(xyz[moving], axis_from, axis_to - axis_from,
                                    target_deg - current)
    return model.with_xyz(xyz)


def _downstream(model: Model, residues: ResidueTable, residue: int) -> np.ndarray:
    """Atoms of the residues after ``residue`` in the same chain."""
    chain = residues.chain[residue]
    return (model.residue_index > residue) & (model.chain_id == chain)


def set_phi(model: Model, residue: int, phi_deg: float) -> Model:
    """Set phi of ``residue`` by rotating everything C-terminal of its N-CA bond."""
    residues = ResidueTable(model)
    prev = residues.previous[residue]
    quad = [residues.atom(prev, "C"), residues.atom(residue, "N"),
            residues.atom(residue, "CA"), residues.atom(residue, "C")]
    own = (model.residue_index == residue) & ~np.isin(model.atom_name, ["N", "H", "CA"])
    return _set_dihedral(model, quad, own | _downstream(model, residues, residue), phi_deg)


def set_psi(model: Model, residue: int, psi_deg: float) -> Model:
    """Set psi of ``residue`` by rotating its O/OXT and everything after it."""
    residues = ResidueTable(model)
    nxt = residues.following[residue]
    quad = [residues.atom(residue, "N"), residues.atom(residue, "CA"),
            residues.atom(residue, "C"), residues.atom(nxt, "N")]
    own = (model.residue_index == residue) & np.isin(model.atom_name, ["O", "OXT"])
    return _set_dihedral(model, quad, own | _downstream(model, residues, residue), psi_deg)


def set_omega(model: Model, residue: int, omega_deg: float) -> Model:
    """Set omega of the peptide before ``residue`` (rotation about C(i-1)-N(i))."""
    residues = ResidueTable(model)
    prev = residues.previous[residue]
    quad = [residues.atom(prev, "CA"), residues.atom(prev, "C"),
            residues.atom(residue, "N"), residues.atom(residue, "CA")]
    own = (model.residue_index == residue) & (model.atom_name != "N")
    return _set_dihedral(model, quad, own | _downstream(model, residues, residue), omega_deg)


def set_chi1(model: Model, residue: int, chi1_deg: float, gamma: str = "CG") -> Model:
    """Set chi1 (N-CA-CB-gamma) by rotating the side chain beyond CB."""
    residues = ResidueTable(model)
    quad = [residues.atom(residue, name) for name in ("N", "CA", "CB", gamma)]
    moving = (model.residue_index == residue) & ~np.isin(model.atom_name,
                                                         sorted(BACKBONE_AND_CB))
    return _set_dihedral(model, quad, moving, chi1_deg)


def rotate_side_chains(model: Model, residue_names: tuple[str, ...], angle_deg: float) -> Model:
    """Turn every side chain of the given residue types by angle_deg about CA-CB."""
    residues = ResidueTable(model)
    xyz = model.xyz.copy()
    for r in np.flatnonzero(np.isin(residues.name, residue_names)):
        ca, cb = residues.atom(r, "CA"), residues.atom(r, "CB")
        moving = (model.residue_index == r) & ~np.isin(model.atom_name, sorted(BACKBONE_AND_CB))
        if ca < 0 or cb < 0 or not moving.any():
            continue
        xyz[moving] = rotate_about_axis(xyz[moving], xyz[ca], xyz[cb] - xyz[ca], angle_deg)
    return model.with_xyz(xyz)


def simulated_map(model: Model, resolution: float = 3.0, voxel: float = 1.0,
                  margin: float = 6.0):
    """A noise-free map of the model's non-water atoms (engine Gaussian model map)."""
    from varref.engine.model_map import model_map, resolution_blur, scattering_coefficients
    from varref.maps import Map

    keep = ~model.is_water
    xyz = model.xyz[keep]
    origin = np.floor(xyz.min(axis=0) - margin)
    shape_xyz = np.ceil((xyz.max(axis=0) + margin - origin) / voxel).astype(int) + 1
    coeff_a, coeff_b = scattering_coefficients(model.element[keep])
    data = model_map(xyz, tuple(shape_xyz[::-1]), origin, np.full(3, voxel), coeff_a, coeff_b,
                     20.0, blur=resolution_blur(resolution))
    return Map(data, origin, np.full(3, voxel), np.full(3, 90.0), source="simulated")
