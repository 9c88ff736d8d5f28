"""Example inputs that varref builds itself from installed packages (no downloads).

The demo and the tests use these when no user data are given. The model is the ideal
poly-alanine α-helix template that Coot ships (``coot_headless_api/share/coot/data/
pdb-templates/theor-helix-70.pdb``, 70 residues, 350 atoms).
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import gemmi
import numpy as np

from varref.errors import InputError
from varref.model import Model

_HELIX = ("share", "coot", "data", "pdb-templates", "theor-helix-70.pdb")


def helix_template_path() -> Path:
    """Path of Coot's ideal α-helix template inside the coot-headless-api package."""
    spec = find_spec("coot_headless_api")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("coot-headless-api", "package not installed; pip install "
                         "coot-headless-api==1.3.3rc1")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*_HELIX)
    if not path.is_file():
        raise InputError(path, "helix template missing from coot-headless-api")
    return path


def example_helix(n_residues: int = 70) -> Model:
    """An ideal poly-Ala α-helix of ``n_residues`` (≤ 70) residues, chain A."""
    st = gemmi.read_structure(str(helix_template_path()))
    st.setup_entities()
    chain = st[0][0]
    for k in range(len(chain) - 1, n_residues - 1, -1):
        del chain[k]
    return Model.from_structure(st, source="coot theor-helix-70 template")


def hinge_motion(model: Model, restraints, hinge_residue_index: int, n_frames: int,
                 max_angle: float) -> np.ndarray:
    """A synthetic variability series: residues after the hinge bend about it, frame by frame.

    The moving part (residue index > ``hinge_residue_index``) rotates about an axis through
    the hinge residue's Cα, perpendicular to the plane of (fixed-part centroid, hinge, moving-
    part centroid), by angles spread linearly over ``[-max_angle, +max_angle]`` degrees, so the
    middle frame is the input model (the "consensus"). Each frame is then regularised with the
    restraints so that the hinge's covalent geometry stays ideal.

    Returns
    -------
    (n_frames, N, 3) true coordinates.
    """
    from scipy.spatial.transform import Rotation

    from varref.perturbation import regularise

    xyz = model.xyz
    hinge = np.flatnonzero((model.residue_index == hinge_residue_index) & (model.atom_name == "CA"))[0]
    moving = model.residue_index > hinge_residue_index
    pivot = xyz[hinge]
    axis = np.cross(xyz[~moving].mean(axis=0) - pivot, xyz[moving].mean(axis=0) - pivot)
    axis /= np.linalg.norm(axis)
    frames = []
    for angle in np.linspace(-max_angle, max_angle, n_frames):
        rotation = Rotation.from_rotvec(np.radians(angle) * axis).as_matrix()
        bent = xyz.copy()
        bent[moving] = (xyz[moving] - pivot) @ rotation.T + pivot
        frames.append(bent)
    return regularise(restraints, np.array(frames), iterations=300)
