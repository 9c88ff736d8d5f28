"""Where the model's density is: an FFT translation search, once per pixel-size scan.

A header voxel size that is wrong by e moves every point of the map by e·(p − o) about the
point o the header error acted about (the box corner, or the frame's origin), so a model that
is right in the true frame sits e·|c − o| from its density — 7 Å for a 2 % error 375 Å from
the corner. A local rigid fit cannot be trusted to cross that: on the 258k-atom benchmark the
fit of a 20,000-atom subset, started 7 Å off, stopped in the plateau around the start (the
torque of atoms far from the centre swamps the weak force). The offset is (nearly) the same at
every trial scale, since trials scale about the model centre, so it is found once, before the
trials: the cross-correlation of the map with the model map, both blurred by B = 100 Å² and
sampled on a grid of about 3 Å (the map resampled by cropping its transform, which is
alias-free), over every shift the scan's range of header errors can cause.

Among the correlation's peaks within that radius whose height is within
:data:`PEAK_TOLERANCE` of the highest, the one nearest to zero shift is taken: in a map of
repeated subunits a model of one of them keeps its own instead of jumping to a neighbour that
fits as well.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
from scipy.ndimage import maximum_filter

from varref.maps import Map
from varref.model import Model
from varref.simulate import model_density

#: Peaks within this fraction of the highest correlation count as equally good placements.
PEAK_TOLERANCE = 0.1
#: Spacing of the search grid, Å (at most; never finer than the map's).
SEARCH_SPACING = 3.0


def correlation_shifts(shape: tuple[int, int, int], voxel_size: np.ndarray) -> np.ndarray:
    """Cartesian shift (x, y, z), Å, of every element of a circular cross-correlation of
    grids of ``shape`` (nz, ny, nx); (nz, ny, nx, 3)."""
    index = [np.fft.fftfreq(n, d=1.0 / n) for n in shape]  # 0, 1, ..., -1 in voxels
    kz, ky, kx = np.meshgrid(*index, indexing="ij")
    return np.stack([kx * voxel_size[0], ky * voxel_size[1], kz * voxel_size[2]], axis=-1)


def low_pass_map(density: Map, spacing: float, blur: float) -> Map:
    """``density`` blurred by ``blur`` Å² and resampled on a grid of at most ``spacing`` Å
    covering the same (zero-padded) box, by cropping its transform: no aliasing."""
    padded = [scipy.fft.next_fast_len(int(n), real=True) for n in density.data.shape]
    lengths = np.array(padded) * density.voxel_size[::-1]  # z, y, x
    target = [min(n, scipy.fft.next_fast_len(int(np.ceil(length / spacing)), real=True))
              for n, length in zip(padded, lengths)]
    data = density.data.astype(np.float32) - np.float32(density.data.mean(dtype=np.float64))
    transform = scipy.fft.rfftn(data, s=padded)
    (mz, my, mx), (nz, ny, _) = target, padded
    rows_z = np.r_[0:(mz + 1) // 2, nz - mz // 2:nz]
    rows_y = np.r_[0:(my + 1) // 2, ny - my // 2:ny]
    cropped = transform[rows_z][:, rows_y][:, :, :mx // 2 + 1]
    sz = np.fft.fftfreq(mz, d=lengths[0] / mz) ** 2
    sy = np.fft.fftfreq(my, d=lengths[1] / my) ** 2
    sx = np.fft.rfftfreq(mx, d=lengths[2] / mx) ** 2
    cropped = cropped * np.exp(-blur / 4.0 * (sz[:, None, None] + sy[None, :, None] + sx[None, None, :]))
    smooth = scipy.fft.irfftn(cropped, s=target).astype(np.float32)
    return Map(smooth, density.origin, lengths[::-1] / np.array(target[::-1]), density.cell_angles)


def translation_search(model: Model, density: Map, resolution: float, max_shift: float,
                       blur: float = 100.0) -> np.ndarray:
    """The shift (x, y, z), Å, that puts the model on its density.

    Parameters
    ----------
    model
        The model (its own coordinates).
    density
        The map.
    resolution
        The map's resolution, Å (for the model map).
    max_shift
        Largest shift searched, Å.
    blur
        Extra B (Å²) of both maps.

    Returns
    -------
    (3,) float64
        Zero when no shift within ``max_shift`` correlates positively.
    """
    coarse = low_pass_map(density, SEARCH_SPACING, blur)
    calculated = model_density(model, model.xyz, coarse, resolution, b_extra=blur)
    f_map = scipy.fft.rfftn(coarse.data - coarse.data.mean())
    f_model = scipy.fft.rfftn(calculated - calculated.mean())
    # c[k] = sum_x map(x + k) model(x): the model moved by +k fits the map with c[k]
    correlation = scipy.fft.irfftn(f_map * f_model.conj(), s=coarse.data.shape)
    shifts = correlation_shifts(coarse.data.shape, coarse.voxel_size)
    distance = np.linalg.norm(shifts, axis=-1)
    within = distance <= max_shift
    peaks = within & (correlation == maximum_filter(correlation, size=3, mode="wrap"))
    if not np.any(peaks) or correlation[peaks].max() <= 0:
        return np.zeros(3)
    good = peaks & (correlation >= (1.0 - PEAK_TOLERANCE) * correlation[peaks].max())
    candidates = np.argwhere(good)
    nearest = tuple(candidates[np.argmin(distance[tuple(candidates.T)])])
    return shifts[nearest] + _subvoxel(correlation, nearest) * coarse.voxel_size


def _subvoxel(correlation: np.ndarray, peak: tuple[int, int, int]) -> np.ndarray:
    """Offset (x, y, z), voxels, of the vertex of a parabola through the peak and its two
    neighbours along each axis (circular), within ±0.5."""
    offset = np.zeros(3)
    for axis in range(3):  # array axes z, y, x
        low, high = list(peak), list(peak)
        low[axis] = (peak[axis] - 1) % correlation.shape[axis]
        high[axis] = (peak[axis] + 1) % correlation.shape[axis]
        c_low, c_0, c_high = correlation[tuple(low)], correlation[peak], correlation[tuple(high)]
        curvature = c_low - 2.0 * c_0 + c_high
        if curvature < 0:
            offset[2 - axis] = np.clip(0.5 * (c_low - c_high) / curvature, -0.5, 0.5)
    return offset
