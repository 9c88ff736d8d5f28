"""Precision from an ensemble of refined models (Terwilliger et al. 2007).

Members refined into the same map already share its frame; each is nevertheless superposed
(Kabsch, heavy atoms) onto the ensemble mean, iterated twice, so that a common rigid-body
drift does not count as imprecision. The per-atom r.m.s. fluctuation

    RMSF_i = sqrt( mean_k |x_ik − <x_i>|² )

and its per-residue mean show where the map does not determine the model.
"""

from __future__ import annotations

import numpy as np
import xarray as xr


def kabsch(mobile: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation R and translation t minimising |mobile @ R.T + t − reference|."""
    mobile_centre, reference_centre = mobile.mean(axis=0), reference.mean(axis=0)
    h = (mobile - mobile_centre).T @ (reference - reference_centre)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    rotation = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return rotation, reference_centre - mobile_centre @ rotation.T


def superposed(members: np.ndarray, selection: np.ndarray, rounds: int = 2) -> np.ndarray:
    """Members (K, N, 3) superposed onto their mean on ``selection`` atoms."""
    result = np.array(members, dtype=np.float64, copy=True)
    for _ in range(rounds):
        mean = result.mean(axis=0)
        for k in range(len(result)):
            rotation, shift = kabsch(result[k, selection], mean[selection])
            result[k] = result[k] @ rotation.T + shift
    return result


def residue_of_atoms(chain: np.ndarray, number: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Residue index (0.. in file order) of every atom, and the first atom of each residue."""
    labels = [f"{c}{n}" for c, n in zip(chain, number)]
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(first)  # residues in file order
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse], first[order]


def precision(dataset: xr.Dataset, frame: int = 0) -> xr.Dataset:
    """Per-atom and per-residue RMSF and summary metrics of the finished members of a frame."""
    done = dataset["finished"].values[frame]
    members = dataset["xyz"].values[frame][done].astype(np.float64)
    heavy = dataset["element"].values != "H"
    aligned = superposed(members, heavy) if len(members) > 1 else members
    rmsf = np.sqrt(np.mean(np.sum((aligned - aligned.mean(axis=0)) ** 2, axis=-1), axis=0))
    chain = dataset["chain_id"].values
    number = dataset["residue_number"].values
    residue_of_atom, first_atoms = residue_of_atoms(chain, number)
    weights = heavy.astype(float)
    per_residue = (np.bincount(residue_of_atom, weights=rmsf * weights)
                   / np.maximum(np.bincount(residue_of_atom, weights=weights), 1))
    cc = dataset["cc_mask"].values[frame][done]
    summary = {
        "n_members": int(done.sum()),
        "cc_mask_mean": float(np.mean(cc)), "cc_mask_min": float(np.min(cc)),
        "cc_mask_max": float(np.max(cc)),
        "bond_rmsd_mean": float(np.mean(dataset["bond_rmsd"].values[frame][done])),
        "angle_rmsd_mean": float(np.mean(dataset["angle_rmsd"].values[frame][done])),
        "rmsf_mean": float(np.mean(rmsf[heavy])), "rmsf_max": float(np.max(rmsf[heavy])),
    }
    return xr.Dataset(
        {"rmsf": ("atom", rmsf), "residue_rmsf": ("residue", per_residue)},
        coords={"atom_name": ("atom", dataset["atom_name"].values),
                "residue_chain": ("residue", chain[first_atoms]),
                "residue_number": ("residue", number[first_atoms]),
                "residue_name": ("residue", dataset["residue_name"].values[first_atoms])},
        attrs=summary,
    )
