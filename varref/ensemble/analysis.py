"""Analysis of a refined series (``varref analyse``): principal motions, rigid domains, hinges.

Method (docs/methods-ensembles.md, *Analysis of a series*)
---------------------------------------------------------
1. **Samples**: the best member (highest CC_mask) of every finished frame, or every finished
   member (``members="all"``).
2. **Superposition**: each sample is superposed (Kabsch) onto the reference frame's best
   member on its Cα atoms (``superpose_on="ca"``; all heavy atoms with ``"heavy"`` or when the
   model has fewer than 3 Cα), so a rigid drift of the whole model is not motion.
3. **PCA** of the superposed heavy-atom coordinates (samples × 3N, centred on their mean; SVD):
   the variance and explained fraction per component, each frame's projection (Å, along the
   unit eigenvector in 3N space), the correlation of the projection with frame order (per
   series component: 3DVA components, cryoDRGN directories), and per residue the displacement
   along each component for one standard deviation of its projection (Å; mean over the
   residue's heavy atoms).
4. **Rigid domains** (the idea of DynDom, Hayward & Berendsen 1998: parts of a rigid body
   rotate alike): each residue's neighbourhood (``window`` residues either side along its
   chain, heavy atoms) is superposed (Kabsch) from the reference frame onto every frame, giving
   a local rotation vector per frame (degrees). Residues are clustered by the r.m.s. over
   frames of the difference of their rotation vectors (average linkage,
   scipy.cluster.hierarchy), cut at ``domain_cutoff`` degrees; clusters smaller than
   ``min_domain_residues`` are left unassigned (-1: flexible). Domains are numbered in order
   of their first residue. (Pairwise-distance variance, the other classic measure, hardly
   sees a hinge bending two elongated domains: their distances change only to second order.)
5. **Hinges**: along each chain, where two consecutive assigned residues belong to different
   domains, the residues from the last of one domain to the first of the next (with any
   unassigned residues between) form a hinge.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from os import PathLike
from pathlib import Path

import numpy as np
import xarray as xr

from varref.ensemble.precision import (
    is_heavy,
    kabsch,
    per_residue_mean,
    residue_coords,
    residue_of_atoms,
)
from varref.ensemble.series_inputs import frame_in_component
from varref.errors import InputError

#: Superposition atom sets.
SUPERPOSE_ON = ("ca", "heavy")
#: Sample sets.
MEMBERS = ("best", "all")


def analyse(dataset: xr.Dataset, *, reference_frame: int | None = None, members: str = "best",
            superpose_on: str = "ca", n_components: int = 5, domain_cutoff: float = 5.0,
            min_domain_residues: int = 5, window: int = 2) -> xr.Dataset:
    """Principal motions, rigid domains and hinges of a refined series.

    Parameters
    ----------
    dataset
        A series results store (:func:`varref.open_results`, :func:`varref.refine_series`).
    reference_frame
        Frame superposed onto and measured from (default: the run's reference frame, else
        the middle frame).
    members
        ``"best"`` (best member per frame) or ``"all"`` (every finished member) as samples.
    superpose_on
        ``"ca"`` (Cα atoms) or ``"heavy"`` (all heavy atoms).
    n_components
        Principal components kept (at most samples − 1).
    domain_cutoff
        Degrees: residues whose local rotations differ by less (r.m.s. over frames, average
        linkage) form one rigid domain.
    min_domain_residues
        Smaller clusters are left unassigned (domain −1).
    window
        Residues on each side of a residue in its neighbourhood (local rotations).

    Returns
    -------
    xarray.Dataset
        Dimensions ``pc`` (1..), ``frame``, ``residue``, ``component`` (series components,
        ``"all"`` without), ``member`` (with ``members="all"``). Variables (units and
        descriptions in their attributes): ``variance``, ``explained_variance_ratio``,
        ``projection`` (frame, pc), ``frame_order_correlation`` (component, pc),
        ``residue_mode_displacement`` (pc, residue), ``residue_displacement`` (frame,
        residue), ``local_rotation`` (frame, residue; degrees), ``domain``,
        ``hinge`` (residue); attributes list the hinge residues (``hinge_residues``). With
        several members per frame also ``residue_spread``, ``residue_frame_motion`` and
        ``spread_exceeds_motion`` (frame, residue; :func:`varref.ensemble.series.member_spread`),
        and the attributes
        ``frames_spread_exceeds_motion`` / ``residues_spread_exceeds_motion`` (where the
        recovered motion is within the members' disagreement).

    Raises
    ------
    InputError
        Fewer than two finished frames, the reference frame unfinished, bad options.

    Examples
    --------
    >>> result = analyse(varref.open_results("series.zarr"))          # doctest: +SKIP
    >>> result["explained_variance_ratio"].values.round(2)             # doctest: +SKIP
    array([0.97, 0.02, 0.01, 0.  , 0.  ])
    >>> result.attrs["hinge_residues"]                                 # doctest: +SKIP
    ['A/20', 'A/21']
    """
    if members not in MEMBERS:
        raise InputError("--members", f"must be one of {', '.join(MEMBERS)}, not {members!r}")
    if superpose_on not in SUPERPOSE_ON:
        raise InputError("--superpose", f"must be one of {', '.join(SUPERPOSE_ON)}, not {superpose_on!r}")
    if n_components < 1:
        raise InputError("--components", f"must be at least 1, not {n_components}")
    if not (np.isfinite(domain_cutoff) and domain_cutoff > 0):
        raise InputError("--domain-cutoff", f"must be > 0 degrees, not {domain_cutoff}")
    if window < 1:
        raise InputError("--window", f"must be at least 1 residue, not {window}")
    if min_domain_residues < 1:
        raise InputError("--min-domain-size", f"must be at least 1, not {min_domain_residues}")

    finished = np.asarray(dataset["finished"].values, dtype=bool)
    cc = np.where(finished, np.asarray(dataset["cc_mask"].values, dtype=float), np.nan)
    best = np.where(finished.any(axis=1), np.argmax(np.where(np.isnan(cc), -np.inf, cc), axis=1), -1)
    n_frames = finished.shape[0]
    frames_done = np.flatnonzero(best >= 0)
    if len(frames_done) < 2:
        raise InputError("store", f"{len(frames_done)} finished frame(s); the analysis needs at least 2")
    if reference_frame is None:
        recorded = dataset.attrs.get("reference_frame")
        reference_frame = int(recorded) if recorded is not None else n_frames // 2
    if not 0 <= reference_frame < n_frames:
        raise InputError("--reference-frame", f"must be in 0..{n_frames - 1}")
    if best[reference_frame] < 0:
        raise InputError("--reference-frame", f"frame {reference_frame} has no finished member")

    element = dataset["element"].values
    heavy = is_heavy(element)
    atom_name = np.char.strip(dataset["atom_name"].values.astype(str))
    selection = heavy & (atom_name == "CA") if superpose_on == "ca" else heavy
    if selection.sum() < 3:
        selection = heavy
    residue, first_atoms = residue_of_atoms(dataset["residue_index"].values)

    def xyz_of(frame: int, member: int) -> np.ndarray:
        return np.asarray(dataset["xyz"].isel(frame=int(frame), member=int(member)).values,
                          dtype=np.float64)

    reference = xyz_of(reference_frame, best[reference_frame])

    def superposed(xyz: np.ndarray) -> np.ndarray:
        rotation, shift = kabsch(xyz[selection], reference[selection])
        return xyz @ rotation.T + shift

    # samples: (frame, member) cells, best member first per frame
    cells = ([(int(f), int(best[f])) for f in frames_done] if members == "best"
             else [(int(f), int(m)) for f in frames_done for m in np.flatnonzero(finished[f])])
    samples = np.stack([superposed(xyz_of(f, m)) for f, m in cells])  # (S, N, 3)
    frame_xyz = np.full((n_frames, *reference.shape), np.nan)
    for index, (f, m) in enumerate(cells):
        if m == best[f]:
            frame_xyz[f] = samples[index]

    # PCA of heavy-atom coordinates
    flat = samples[:, heavy].reshape(len(samples), -1)
    centred = flat - flat.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    n_pc = max(1, min(n_components, len(samples) - 1, vt.shape[0]))
    power = singular ** 2
    total = power.sum()
    variance = power[:n_pc] / max(len(samples) - 1, 1)
    ratio = power[:n_pc] / total if total > 0 else np.zeros(n_pc)
    vectors = vt[:n_pc]
    scores = centred @ vectors.T  # (S, pc) Å
    # fix each component's sign: projection increasing with frame order
    order_all = np.array([f for f, _ in cells], dtype=float)
    for k in range(n_pc):
        if np.std(scores[:, k]) > 0 and np.corrcoef(order_all, scores[:, k])[0, 1] < 0:
            scores[:, k] *= -1
            vectors[k] *= -1
    projection = np.full((n_frames, n_pc), np.nan)
    member_projection = np.full((n_frames, finished.shape[1], n_pc), np.nan)
    for index, (f, m) in enumerate(cells):
        member_projection[f, m] = scores[index]
        if m == best[f]:
            projection[f] = scores[index]
    amplitude = np.zeros((n_pc, len(element)))
    amplitude[:, heavy] = np.linalg.norm(vectors.reshape(n_pc, -1, 3), axis=2)
    amplitude *= np.sqrt(variance)[:, None]
    mode_displacement = per_residue_mean(amplitude, residue, heavy.astype(float))  # (pc, R)

    # correlation with frame order, per series component
    components = dataset["component"].values.astype(str).tolist() if "component" in dataset.coords else None
    groups = list(dict.fromkeys(components)) if components is not None else ["all"]
    position = frame_in_component(components, n_frames).astype(float)
    correlation = np.full((len(groups), n_pc), np.nan)
    for g, group in enumerate(groups):
        in_group = np.array([components is None or components[f] == group for f in range(n_frames)])
        use = in_group & (best >= 0)
        if use.sum() < 3:
            continue
        for k in range(n_pc):
            values = projection[use, k]
            if np.std(values) > 0 and np.std(position[use]) > 0:
                correlation[g, k] = np.corrcoef(position[use], values)[0, 1]

    # per-residue displacement from the reference frame
    displacement = np.linalg.norm(frame_xyz - reference, axis=-1)  # (frame, atom)
    residue_displacement = per_residue_mean(np.nan_to_num(displacement), residue, heavy.astype(float))
    residue_displacement[best < 0] = np.nan

    # rigid domains: residues whose neighbourhoods rotate alike (DynDom's idea)
    coords = residue_coords(dataset, first_atoms)
    chain_of_residue = coords["residue_chain"][1]
    rotations = np.full((n_frames, len(first_atoms), 3), np.nan)
    rotations[frames_done] = local_rotations(reference, frame_xyz[frames_done], residue,
                                             heavy.astype(float), chain_of_residue, window)
    domain = rigid_domains(rotations[frames_done], domain_cutoff, min_domain_residues)
    hinge = hinge_residues(domain, chain_of_residue)
    labels = coords["residue_label"][1]

    frame_coords = {"frame": ("frame", np.arange(n_frames), {"units": "1", "description": "frame index"}),
                    "source": ("frame", dataset["source"].values.astype(str),
                               {"units": "n/a", "description": "map file or label of the frame"})}
    if components is not None:
        frame_coords["frame_component"] = ("frame", np.asarray(components, dtype=str),
                                           {"units": "n/a", "description": "series component of the frame"})
    data = {
        "variance": (("pc",), variance, {"units": "Å²", "description": "variance of the projections "
                                         "on the component (eigenvalue of the coordinate covariance)"}),
        "explained_variance_ratio": (("pc",), ratio, {"units": "1", "description":
                                     "fraction of the total coordinate variance explained"}),
        "projection": (("frame", "pc"), projection, {"units": "Å", "description":
                       "projection of the frame's best member on the component (sign: increasing with frame order)"}),
        "frame_order_correlation": (("component", "pc"), correlation, {"units": "1", "description":
                                    "Pearson correlation of the projection with the frame's position in its component"}),
        "residue_mode_displacement": (("pc", "residue"), mode_displacement, {"units": "Å", "description":
                                      "residue displacement for one standard deviation along the component"}),
        "residue_displacement": (("frame", "residue"), residue_displacement, {"units": "Å", "description":
                                 "displacement of the residue from the reference frame after superposition (heavy-atom mean)"}),
        "local_rotation": (("frame", "residue"), np.linalg.norm(rotations, axis=-1), {"units": "degree",
                           "description": f"rotation of the residue's neighbourhood (±{window} residues) "
                                          "from the reference frame, after superposition"}),
        "domain": (("residue",), domain, {"units": "1", "description":
                   "rigid domain (0.., in order of first residue); -1: unassigned (flexible)"}),
        "hinge": (("residue",), hinge, {"units": "n/a", "description": "residue in a hinge between two domains"}),
    }
    if members == "all":
        data["member_projection"] = (("frame", "member", "pc"), member_projection, {
            "units": "Å", "description": "projection of every finished member on the component"})
    unsupported: dict[str, object] = {}
    if (finished.sum(axis=1) >= 2).any():
        # several members per frame: their spread is the frame's uncertainty, and where it
        # exceeds the residue's motion over the series the motion is not supported by the data
        from varref.ensemble.series import member_spread

        spread = member_spread(dataset, reference_frame)
        exceeds = spread["spread_exceeds_motion"]
        data["residue_spread"] = (("frame", "residue"), spread["residue_spread"], {
            "units": "Å", "description": "r.m.s. deviation of the frame's finished members from "
                                         "their mean (heavy-atom mean per residue); NaN with < 2 members"})
        data["residue_frame_motion"] = (("frame", "residue"), spread["residue_frame_motion"], {
            "units": "Å", "description": "displacement of the frame's member mean from the "
                                         "reference frame's member mean (heavy-atom mean per residue)"})
        data["spread_exceeds_motion"] = (("frame", "residue"), exceeds, {
            "units": "n/a", "description": "the frame's member spread exceeds its motion from the "
                                           "reference frame: the motion there is not determined by the data"})
        unsupported = {"frames_spread_exceeds_motion": [int(f) for f in np.flatnonzero(exceeds.any(axis=1))],
                       "residues_spread_exceeds_motion": [str(x) for x in spread["residue_label"][exceeds.any(axis=0)]]}
    result = xr.Dataset(
        data,
        coords={"pc": ("pc", np.arange(1, n_pc + 1), {"units": "1", "description": "principal component, 1.."}),
                "component": ("component", np.asarray(groups, dtype=str),
                              {"units": "n/a", "description": "series component ('all' when the series has none)"}),
                **frame_coords, **coords},
        attrs={"varref_analysis": 1, "reference_frame": int(reference_frame),
               "members": members, "superposed_on": "ca" if superpose_on == "ca" and
               (heavy & (atom_name == "CA")).sum() >= 3 else "heavy",
               "n_superposition_atoms": int(selection.sum()), "n_samples": len(cells),
               "domain_cutoff_degrees": float(domain_cutoff), "min_domain_residues": int(min_domain_residues),
               "window": int(window),
               "n_domains": int(domain.max() + 1) if (domain >= 0).any() else 0,
               "hinge_residues": [str(x) for x in labels[hinge]],
               **unsupported,
               "method": "Kabsch superposition on the reference frame; PCA (SVD) of heavy-atom "
                         "coordinates; domains by average-linkage clustering of local rotation "
                         "vectors (DynDom-like); see docs/methods-ensembles.md"})
    return result


def local_rotations(reference: np.ndarray, frames: np.ndarray, residue: np.ndarray,
                    weights: np.ndarray, chain_of_residue: np.ndarray, window: int = 2
                    ) -> np.ndarray:
    """Rotation vector (degrees) of each residue's neighbourhood, reference → each frame.

    The neighbourhood of residue i is residues i−window..i+window of its chain (weighted
    atoms, e.g. heavy atoms); its rotation is the Kabsch rotation taking the reference's atoms
    onto the frame's (batched over residues: per-residue sums, prefix sums along the chain,
    one 3×3 SVD per window).

    Parameters
    ----------
    reference
        (N, 3) reference coordinates, Å.
    frames
        (F, N, 3) superposed coordinates, Å.
    residue
        (N,) residue of each atom, 0.. in file order (:func:`residue_of_atoms`).
    weights
        (N,) 1 for atoms used, 0 for others.
    chain_of_residue
        (R,) chain of each residue (windows stop at chain ends).
    window
        Residues on each side.

    Returns
    -------
    (F, R, 3) rotation vectors in degrees (NaN where a window has fewer than 3 atoms).
    """
    from scipy.spatial.transform import Rotation

    n_residues = len(chain_of_residue)
    weights = np.asarray(weights, dtype=float)

    def per_residue(values: np.ndarray) -> np.ndarray:  # (N, k) -> (R + 1, k) prefix sums
        sums = np.stack([np.bincount(residue, weights=values[:, j] * weights, minlength=n_residues)
                         for j in range(values.shape[1])], axis=1)
        return np.vstack([np.zeros((1, values.shape[1])), np.cumsum(sums, axis=0)])

    chain = np.asarray(chain_of_residue).astype(str)
    boundary = np.r_[True, chain[1:] != chain[:-1]]
    chain_start = np.maximum.accumulate(np.where(boundary, np.arange(n_residues), 0))
    end = np.r_[np.flatnonzero(boundary)[1:], n_residues] - 1  # last residue of each chain
    chain_end = end[np.cumsum(boundary) - 1]
    index = np.arange(n_residues)
    low = np.maximum(index - window, chain_start)
    high = np.minimum(index + window, chain_end) + 1

    def window_sum(prefix: np.ndarray) -> np.ndarray:
        return prefix[high] - prefix[low]

    count = window_sum(per_residue(np.ones((len(residue), 1))))[:, 0]
    sum_x = window_sum(per_residue(reference))
    result = np.full((len(frames), n_residues, 3), np.nan)
    usable = count >= 3
    for f, xyz in enumerate(frames):
        sum_y = window_sum(per_residue(xyz))
        outer = np.einsum("ni,nj->nij", reference, xyz).reshape(len(reference), 9)
        h = window_sum(per_residue(outer)).reshape(n_residues, 3, 3)
        with np.errstate(invalid="ignore", divide="ignore"):
            h -= np.einsum("ni,nj->nij", sum_x, sum_y) / count[:, None, None]
        u, _, vt = np.linalg.svd(h[usable])
        d = np.sign(np.linalg.det(np.transpose(vt, (0, 2, 1)) @ np.transpose(u, (0, 2, 1))))
        fix = np.ones((len(d), 3))
        fix[:, 2] = d
        rotation = np.transpose(vt, (0, 2, 1)) @ (fix[:, :, None] * np.transpose(u, (0, 2, 1)))
        result[f, usable] = np.degrees(Rotation.from_matrix(rotation).as_rotvec())
    return result


def rigid_domains(rotations: np.ndarray, cutoff: float, min_size: int) -> np.ndarray:
    """Rigid domains: residues whose neighbourhoods rotate alike over the frames.

    The dissimilarity of residues i and j is the r.m.s. over frames of the difference of
    their local rotation vectors (degrees; :func:`local_rotations`); average-linkage
    hierarchical clustering (scipy.cluster.hierarchy), cut at ``cutoff`` degrees.

    Parameters
    ----------
    rotations
        (F, R, 3) local rotation vectors, degrees (NaN: residue left out).
    cutoff
        Degrees: linkage height at which the tree is cut.
    min_size
        Clusters smaller than this are unassigned (−1).

    Returns
    -------
    (R,) int: domain of each residue (0.. in order of first residue), −1 unassigned.

    Examples
    --------
    >>> rotations = np.zeros((3, 4, 3))
    >>> rotations[:, 2:, 2] = np.array([0.0, 10.0, 20.0])[:, None]   # residues 2, 3 turn together
    >>> rigid_domains(rotations, 5.0, 2).tolist()
    [0, 0, 1, 1]
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    n_frames, n_residues = rotations.shape[:2]
    valid = ~np.isnan(rotations).any(axis=(0, 2))
    domain = np.full(n_residues, -1, dtype=np.int64)
    if valid.sum() < 2:
        return domain
    features = np.transpose(rotations[:, valid], (1, 0, 2)).reshape(int(valid.sum()), -1)
    distance = pdist(features) / np.sqrt(n_frames)  # r.m.s. over frames, degrees
    labels = fcluster(linkage(distance, method="average"), t=cutoff, criterion="distance")
    sizes = np.bincount(labels)
    assigned = np.where(sizes[labels] >= min_size, labels, -1)
    renumber: dict[int, int] = {}
    for label in assigned:  # in residue order
        if label >= 0 and label not in renumber:
            renumber[int(label)] = len(renumber)
    domain[valid] = [renumber.get(int(label), -1) for label in assigned]
    return domain


def hinge_residues(domain: np.ndarray, chain: np.ndarray) -> np.ndarray:
    """Residues between two domains along a chain (bool per residue).

    Where consecutive assigned residues of one chain belong to different domains, the
    residues from the last of the one to the first of the other (unassigned ones between
    included) are hinge residues.

    Examples
    --------
    >>> hinge_residues(np.array([0, 0, 0, -1, 1, 1]), np.array(list("AAAAAA"))).tolist()
    [False, False, True, True, True, False]
    """
    hinge = np.zeros(len(domain), dtype=bool)
    previous = None
    for index in range(len(domain)):
        if previous is not None and chain[index] != chain[previous]:
            previous = None
        if domain[index] < 0:
            continue
        if previous is not None and domain[previous] != domain[index]:
            hinge[previous:index + 1] = True
        previous = index
    return hinge


def domain_segments(analysis: xr.Dataset) -> dict[int, list[str]]:
    """Each domain's residue ranges, e.g. ``{0: ["A/1-20"], 1: ["A/23-40"]}``."""
    domain = analysis["domain"].values
    chain = analysis["residue_chain"].values.astype(str)
    label = analysis["residue_label"].values.astype(str)
    segments: dict[int, list[str]] = {}
    start = 0
    for index in range(1, len(domain) + 1):
        if index == len(domain) or domain[index] != domain[start] or chain[index] != chain[start]:
            if domain[start] >= 0:
                first, last = label[start], label[index - 1].split("/", 1)[1]
                segments.setdefault(int(domain[start]), []).append(
                    first if index - 1 == start else f"{first}-{last}")
            start = index
    return segments


def write_analysis(analysis: xr.Dataset, path: str | PathLike) -> Path:
    """Write the analysis as a zarr store, atomically (built next to ``path``, renamed in).

    An existing store at ``path`` is replaced (the caller checks ``--overwrite``).
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent))
    try:
        analysis.to_zarr(str(tmp / "store"), mode="w", consolidated=True, zarr_format=2)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=parent))
            os.replace(path, old / "store")
            os.replace(tmp / "store", path)
            shutil.rmtree(old)
        else:
            os.replace(tmp / "store", path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path
