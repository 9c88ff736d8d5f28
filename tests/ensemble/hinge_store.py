"""A results store of a known hinge motion, built without refinement (fast).

A 40-residue ideal helix (chain A, residues 1-40); residues after ``HINGE_INDEX`` rotate about
an axis through the hinge residue's Cα, perpendicular to the helix axis, by angles growing
linearly over the frames; every frame also gets a small random rigid-body drift and 0.05 Å
of coordinate noise, as refined models would.
"""

from __future__ import annotations

import numpy as np

from varref.ensemble.results import ResultStore
from varref.example_data import example_helix

HINGE_INDEX = 19  # residue index (0-based) of the hinge: residues 0..19 fixed, 20..39 move
N_FRAMES = 11
REFERENCE = 5


def hinge_frames(model, n_frames: int = N_FRAMES, max_angle: float = 25.0, seed: int = 0,
                 drift: bool = True) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    xyz = model.xyz
    ca = model.atom_name == "CA"
    centred = xyz[ca] - xyz[ca].mean(axis=0)
    helix_axis = np.linalg.svd(centred)[2][0]
    axis = np.cross(helix_axis, [0.0, 0.0, 1.0])
    axis /= np.linalg.norm(axis)
    pivot = xyz[np.flatnonzero(ca & (model.residue_index == HINGE_INDEX))[0]]
    moving = model.residue_index > HINGE_INDEX
    frames = []
    for angle in np.linspace(-max_angle / 2, max_angle / 2, n_frames):
        bent = xyz.copy()
        rotation = Rotation.from_rotvec(np.radians(angle) * axis).as_matrix()
        bent[moving] = (xyz[moving] - pivot) @ rotation.T + pivot
        if drift:
            tilt = Rotation.from_rotvec(rng.normal(0.0, np.radians(1.0), 3)).as_matrix()
            bent = (bent - bent.mean(axis=0)) @ tilt.T + bent.mean(axis=0) + rng.normal(0, 0.3, 3)
        bent += rng.normal(0.0, 0.05, bent.shape)
        frames.append(bent)
    return np.array(frames)


def hinge_store(path=None, components=None, members: int = 1):
    """(store, model, frames) of the hinge series; ``path`` None: in memory."""
    model = example_helix(40)
    frames = hinge_frames(model)
    parameters = {"kind": "series", "reference_frame": REFERENCE, "mode": "chained"}
    if components is not None:
        parameters["components"] = components
    store = ResultStore.create(path, model, len(frames), members,
                               [f"frame_{k:03d}.mrc" for k in range(len(frames))], parameters)
    for frame, xyz in enumerate(frames):
        for member in range(members):
            jitter = np.random.default_rng([frame, member]).normal(0.0, 0.05, xyz.shape) if member else 0.0
            store.write_member(frame, member, xyz + jitter, xyz,
                               {"cc_mask": 0.8 - 0.01 * member, "runtime_s": 1.0})
    return store, model, frames
