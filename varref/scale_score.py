"""The pixel-size scan's accurate score: CC over the CC_mask region against a model map
matched shell by shell to the map's radial profile, with per-segment sums for the bootstrap.

Why a matched model map (issue 14): scaling a map also scales the width of its features, so
a model map of fixed point-spread function (varref's Gaussian, B + 4 d²) trades a width
mismatch against the position fit and CC_mask peaks off the true scale — by 0.1–2.5 % on maps
from gemmi's simulator (sharp cutoff at 1/d). The matched map takes on the map's own profile
at every trial, leaving only where the density is (docs/methods-calibration.md).

Cost (258k-atom model, 26 M voxels): the map's transform does not depend on the trial's voxel
size (a trial relabels the grid, its values stay), so :class:`ProfileMatcher` makes it once
and each trial adds one forward and one inverse FFT — single precision, on a box padded to
FFT-friendly sizes (``scipy.fft.next_fast_len``: 566 × 540 × 86 → 576 × 540 × 90, 10× faster
than the prime factor 283 in double precision). Mask points are given to their nearest atom
by painting atom balls on the grid (:func:`varref.engine.nearest_atom.nearest_atom_grid`)
instead of a k-d tree query of millions of points.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from varref.engine.correlation import SOLVENT_RADIUS, cc_mask, mask_radii, molecular_mask
from varref.engine.model_map import (CORRELATION_CUTOFF, model_map, resolution_blur,
                                     scattering_coefficients)
from varref.engine.nearest_atom import nearest_atom_grid
from varref.maps import Map
from varref.model import Model

#: Residues per bootstrap segment, and the most segments (longer ones on huge models).
SEGMENT_RESIDUES, MAX_SEGMENTS = 10, 2000


def residue_segments(model: Model) -> np.ndarray:
    """Segment of every heavy atom: runs of :data:`SEGMENT_RESIDUES` consecutive residues in
    model order (longer runs when that would give more than :data:`MAX_SEGMENTS`)."""
    length = max(SEGMENT_RESIDUES, int(np.ceil(max(int(model.n_residues), 1) / MAX_SEGMENTS)))
    _, segments = np.unique(model.residue_index[~model.is_hydrogen] // length, return_inverse=True)
    return segments.astype(np.int64)


def fixed_shells(shape: tuple[int, int, int], voxel_size: np.ndarray, width: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Shell index ``rint(|h| / width)`` of every coefficient of an ``rfftn`` of a grid of
    ``shape`` (shaped as the transform), and the Friedel weight along the last axis (2, or 1
    on the kx = 0 and Nyquist planes; shape (nx // 2 + 1,), broadcasts against the index).

    The shell width is in Å⁻¹ and fixed for a whole scan: shells drawn from each trial's own
    box (whose size in Å grows with the scale) would move their edges from trial to trial.
    """
    nz, ny, nx = shape
    vx, vy, vz = (float(v) for v in voxel_size)
    fz2 = (np.fft.fftfreq(nz, d=vz) ** 2).astype(np.float32)
    fy2 = (np.fft.fftfreq(ny, d=vy) ** 2).astype(np.float32)
    fx2 = (np.fft.rfftfreq(nx, d=vx) ** 2).astype(np.float32)
    s = np.sqrt(fz2[:, None, None] + fy2[None, :, None] + fx2[None, None, :])
    s *= np.float32(1.0 / width)
    weight = np.full(nx // 2 + 1, 2.0)
    weight[0] = 1.0
    if nx % 2 == 0:
        weight[-1] = 1.0
    return np.rint(s).astype(np.int64), weight


class ProfileMatcher:
    """Model maps matched to one observed map's radial profile, for any voxel size.

    The observed map's transform (mean removed, zero-padded to FFT-friendly sizes, single
    precision) is made once; :meth:`matched` then costs one forward and one inverse FFT.
    A scan's trials relabel the same grid with other voxel sizes, so one matcher serves
    them all.

    Parameters
    ----------
    observed
        (nz, ny, nx) map values.
    """

    def __init__(self, observed: np.ndarray) -> None:
        self.shape = tuple(int(n) for n in observed.shape)
        self.padded = tuple(scipy.fft.next_fast_len(n, real=True) for n in self.shape)
        self.f_o = self._transform(observed)
        weight = fixed_shells(self.padded, np.ones(3), 1.0)[1].astype(np.float32)
        self.power_o = float(np.sum((self.f_o.real ** 2 + self.f_o.imag ** 2) * weight, dtype=np.float64))

    def _transform(self, data: np.ndarray) -> np.ndarray:
        centred = np.asarray(data, dtype=np.float32) - np.float32(np.mean(data, dtype=np.float64))
        return scipy.fft.rfftn(centred, s=self.padded, overwrite_x=True)

    def matched(self, calculated: np.ndarray, voxel_size: np.ndarray, shell_width: float
                ) -> tuple[np.ndarray, float]:
        """The model map filtered, shell by shell, to the observed map's radial profile, and
        the CC of the (unfiltered) model map with the map over the box.

        Each shell k of the (mean-removed) transforms gets the least-squares scale
        k_s = Σ Re(F_o F_c*) / Σ |F_c|² (negative values set to 0), and the model map
        becomes FT⁻¹(k_s F_c): whatever the data's point-spread function — B, a sharp
        cutoff, sharpening, FSC weighting — the model map then has the same, so a trial's
        score measures where the density is, not how wide it is.

        The box CC comes free from the same sums (Parseval: the zero padding adds nothing to
        Σ a·b of the mean-removed maps), Σ_s Σ Re(F_o F_c*) / sqrt(Σ|F_c|² Σ|F_o|²).

        Returns
        -------
        (matched, cc_box)
            The matched map, float32 on the observed map's grid, and CC_box.
        """
        if tuple(calculated.shape) != self.shape:
            raise ValueError(f"model map {calculated.shape} differs from the map {self.shape}")
        f_c = self._transform(calculated)
        index, weight = fixed_shells(self.padded, voxel_size, shell_width)
        weight = weight.astype(np.float32)
        cross = self.f_o.real * f_c.real
        cross += self.f_o.imag * f_c.imag
        cross *= weight
        power = f_c.real * f_c.real
        power += f_c.imag * f_c.imag
        power *= weight
        flat = index.ravel()
        shell_cross = np.bincount(flat, cross.ravel())
        shell_power = np.bincount(flat, power.ravel())
        del cross, power
        box = float(shell_cross.sum() / np.sqrt(shell_power.sum() * self.power_o))
        scale = np.clip(shell_cross / np.where(shell_power > 0, shell_power, np.inf), 0.0, None)
        f_c *= scale.astype(np.float32)[index]
        matched = scipy.fft.irfftn(f_c, s=self.padded, overwrite_x=True)
        nz, ny, nx = self.shape
        return np.ascontiguousarray(matched[:nz, :ny, :nx], dtype=np.float32), box


def matched_model_map(calculated: np.ndarray, observed: np.ndarray, voxel_size: np.ndarray,
                      shell_width: float) -> np.ndarray:
    """The model map matched to ``observed``'s radial profile (one-off
    :meth:`ProfileMatcher.matched`)."""
    return ProfileMatcher(observed).matched(calculated, voxel_size, shell_width)[0]


def segment_sums(model_values: np.ndarray, map_values: np.ndarray, owner: np.ndarray,
                 n_segments: int) -> np.ndarray:
    """Per-segment sums (n, Σx, Σy, Σx², Σy², Σxy) of points, point i belonging to segment
    ``owner[i]``; (n_segments, 6) float64."""
    x, y = model_values.astype(np.float64), map_values.astype(np.float64)
    return np.stack([np.bincount(owner, w, minlength=n_segments)
                     for w in (np.ones_like(x), x, y, x * x, y * y, x * y)], axis=1)


def cc_of_sums(sums: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Pearson CC of the points of segments taken ``weights`` times each ((n_seg,) or
    (n_boot, n_seg); default once): from the sums of :func:`segment_sums`."""
    w = np.ones(sums.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    n, sx, sy, sxx, syy, sxy = (np.atleast_2d(w) @ sums).T
    with np.errstate(invalid="ignore", divide="ignore"):
        value = (sxy - sx * sy / n) / np.sqrt((sxx - sx * sx / n) * (syy - sy * sy / n))
    return value if np.ndim(w) == 2 else value[0]


def score_pose(model: Model, xyz: np.ndarray, trial: Map, resolution: float,
               shell_width: float, matcher: ProfileMatcher | None = None) -> dict[str, object]:
    """The scan's score of coordinates ``xyz`` in ``trial`` and what is recorded with it.

    Returns ``cc_matched`` (CC over the CC_mask region between the map and the model map
    matched to its radial profile, :class:`ProfileMatcher`), its per-segment sums ``sums``
    (:func:`segment_sums` over :func:`residue_segments`, mask points given to their nearest
    heavy atom) for the bootstrap, and ``cc_mask`` and ``cc_box`` of the unmatched model map
    (as :func:`varref.mapfit.correlations` reports them, but with atoms truncated at
    :data:`~varref.engine.model_map.CORRELATION_CUTOFF` of their peak, 1.5× faster: CC_mask
    changes by 3·10⁻⁷ on the 258k-atom benchmark). ``matcher`` must have been made from
    ``trial.data`` (default: made here).
    """
    heavy = ~model.is_hydrogen
    coeff_a, coeff_b = scattering_coefficients(model.element[heavy])
    calculated = model_map(xyz[heavy], trial.data.shape, trial.origin, trial.voxel_size, coeff_a,
                           coeff_b, model.b_iso[heavy], model.occupancy[heavy],
                           blur=resolution_blur(resolution), cutoff=CORRELATION_CUTOFF)
    radii = mask_radii(model.element[heavy])
    mask = molecular_mask(xyz[heavy], radii, trial.data.shape, trial.origin, trial.voxel_size)
    matcher = ProfileMatcher(trial.data) if matcher is None else matcher
    matched, box = matcher.matched(calculated, trial.voxel_size, shell_width)
    result: dict[str, object] = {"cc_mask": float(cc_mask(calculated, trial.data, mask)),
                                 "cc_box": box}
    del calculated
    # every mask point lies within r_vdW + SOLVENT_RADIUS of some atom, so its nearest atom
    # is within the largest such radius: the painted labels equal a nearest-atom query
    nearest = nearest_atom_grid(xyz[heavy], float(radii.max()) + SOLVENT_RADIUS,
                                trial.data.shape, trial.origin, trial.voxel_size)[mask]
    if nearest.size and nearest.min() < 0:
        raise RuntimeError("a CC_mask point has no atom within the mask radius")
    segments = residue_segments(model)
    sums = segment_sums(matched[mask], trial.data[mask], segments[nearest], int(segments.max()) + 1)
    result.update({"cc_matched": float(cc_of_sums(sums)), "sums": sums})
    return result
