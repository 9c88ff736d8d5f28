"""Precision from an ensemble of refined models (Terwilliger et al. 2007).

Members refined into the same map already share its frame; each is nevertheless superposed
(Kabsch, heavy atoms) onto the ensemble mean, iterated twice, so that a common rigid-body
drift does not count as imprecision. The per-atom r.m.s. fluctuation

    RMSF_i = sqrt( mean_k |x_ik − <x_i>|² )

and its per-residue mean (heavy atoms: neither H nor D) show where the map does not determine
the model. Residues are grouped by the store's ``residue_index`` (see :func:`residue_of_atoms`).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from varref.ensemble.results import HYDROGEN_ELEMENTS


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


def is_heavy(element: np.ndarray) -> np.ndarray:
    """True for every atom that is not hydrogen; deuterium (``"D"``) counts as hydrogen.

    Examples
    --------
    >>> is_heavy(np.array(["C", "H", "D", "O", "h"])).tolist()
    [True, False, False, True, False]
    """
    symbols = np.char.upper(np.char.strip(np.asarray(element).astype(str)))
    return ~np.isin(symbols, sorted(HYDROGEN_ELEMENTS))


def residue_of_atoms(residue_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group atoms by residue: the residue (0.. in file order) of every atom, and the first
    atom of each residue.

    Residues are identified by the store's integer ``residue_index`` coordinate (one per
    (chain, residue number, insertion code) in file order), never by a label, so chain "A1"
    residue 1 and chain "A" residue 11 stay apart, as do residues 52 and 52A.

    Examples
    --------
    >>> residue, first = residue_of_atoms(np.array([0, 0, 1, 1, 1, 2]))
    >>> residue.tolist(), first.tolist()
    ([0, 0, 1, 1, 1, 2], [0, 2, 5])
    """
    residue_index = np.asarray(residue_index)
    values, first, inverse = np.unique(residue_index, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # residues in file order
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse.reshape(-1)], first[order]


def residue_coords(dataset: xr.Dataset, first_atoms: np.ndarray) -> dict[str, tuple]:
    """Per-residue coordinates (dimension ``residue``) from the atoms ``first_atoms``.

    ``residue_label`` is ``"chain/number+insertion code"`` (``"A/52A"``, ``"A1/1"``).

    Examples
    --------
    >>> _, first = residue_of_atoms(ds["residue_index"].values)   # doctest: +SKIP
    >>> residue_coords(ds, first)["residue_label"][1][:3]          # doctest: +SKIP
    array(['A/1', 'A/2', 'A/3'], dtype='<U5')
    """
    def per_residue(name):
        return np.asarray(dataset[name].values)[first_atoms]

    chain = per_residue("chain_id").astype(str)
    number = per_residue("residue_number").astype(np.int64)
    icode = np.char.strip(per_residue("insertion_code").astype(str))
    label = np.array([f"{c}/{n}{i}" for c, n, i in zip(chain, number, icode)], dtype=str)
    text = {"units": "n/a"}
    return {
        "residue_index": ("residue", per_residue("residue_index").astype(np.int64),
                          {"units": "1", "description": "residue index, 0.. in file order"}),
        "residue_chain": ("residue", chain, {**text, "description": "chain name"}),
        "residue_number": ("residue", number, {"units": "1", "description": "author residue number"}),
        "residue_insertion_code": ("residue", icode, {**text, "description": "insertion code ('' if none)"}),
        "residue_name": ("residue", per_residue("residue_name").astype(str), {**text, "description": "residue name"}),
        "residue_label": ("residue", label, {**text, "description": "chain/number+insertion code"}),
    }


def per_residue_mean(values: np.ndarray, residue: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean of per-atom ``values`` (..., N) per residue; NaN for a residue whose
    weights are all zero (e.g. no heavy atom)."""
    n_residues = int(residue.max()) + 1
    total = np.bincount(residue, weights=weights, minlength=n_residues)
    values = np.atleast_2d(values)
    sums = np.stack([np.bincount(residue, weights=row * weights, minlength=n_residues) for row in values])
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(total > 0, sums / total, np.nan)
    return means


def precision(dataset: xr.Dataset, frame: int = 0) -> xr.Dataset:
    """Per-atom and per-residue RMSF and summary metrics of the finished members of a frame.

    Reads only the finished members of ``frame``. Per-residue values are means over heavy
    atoms (not H or D), grouped by ``residue_index``; NaN for a residue without heavy atoms.

    Raises
    ------
    ValueError
        No member of the frame has finished.

    Examples
    --------
    >>> spread = precision(open_results("ens.zarr"))                 # doctest: +SKIP
    >>> spread["residue_rmsf"].to_series().nlargest(3)                # doctest: +SKIP
    """
    done = np.asarray(dataset["finished"].isel(frame=frame).values, dtype=bool)
    if not done.any():
        raise ValueError(f"frame {frame} has no finished member")
    selected = np.flatnonzero(done)
    members = np.asarray(dataset["xyz"].isel(frame=frame, member=selected).values, dtype=np.float64)
    heavy = is_heavy(dataset["element"].values)
    aligned = superposed(members, heavy) if len(members) > 1 else members
    rmsf = np.sqrt(np.mean(np.sum((aligned - aligned.mean(axis=0)) ** 2, axis=-1), axis=0))
    residue_of_atom, first_atoms = residue_of_atoms(dataset["residue_index"].values)
    per_residue = per_residue_mean(rmsf, residue_of_atom, heavy.astype(float))[0]

    def metric(name):
        return np.asarray(dataset[name].isel(frame=frame, member=selected).values, dtype=float)

    cc = metric("cc_mask")
    summary = {
        "frame": int(frame), "n_members": int(done.sum()),
        "cc_mask_mean": float(np.mean(cc)), "cc_mask_min": float(np.min(cc)),
        "cc_mask_max": float(np.max(cc)),
        "bond_rmsd_mean": float(np.mean(metric("bond_rmsd"))),
        "angle_rmsd_mean": float(np.mean(metric("angle_rmsd"))),
        "rmsf_mean": float(np.mean(rmsf[heavy])), "rmsf_max": float(np.max(rmsf[heavy])),
    }
    coords = {"atom_name": ("atom", np.asarray(dataset["atom_name"].values),
                            {"units": "n/a", "description": "atom name"}),
              **residue_coords(dataset, first_atoms)}
    return xr.Dataset(
        {"rmsf": ("atom", rmsf, {"units": "Å", "description": "r.m.s. fluctuation of the atom "
                                 "over the superposed finished members"}),
         "residue_rmsf": ("residue", per_residue, {"units": "Å", "description": "mean RMSF of "
                          "the residue's heavy atoms (NaN if it has none)"})},
        coords=coords,
        attrs=summary,
    )
