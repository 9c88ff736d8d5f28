"""Maps from a simulator other than varref's own: gemmi's electron-density calculator.

A calibration (``varref pixel-scan``) judged on maps from varref's own model-map kernel is
judged on the very point-spread function it scores with, so a mismatch between that function
and a real map's cannot show. Here the map comes from gemmi's :class:`gemmi.DensityCalculatorE`
(electron scattering factors, atoms' own B, no extra blur) on a grid of spacing ≈ d/4,
followed by a sharp Fourier cutoff at 1/d — the band limit of a reconstruction, rather than
the Gaussian fall-off varref's model maps use (B = 4 d²).
"""

from __future__ import annotations

import gemmi
import numpy as np

from varref.maps import Map
from varref.model import Model


def sharp_cutoff(data: np.ndarray, voxel_size: np.ndarray, d_min: float, unblur: float = 0.0
                 ) -> np.ndarray:
    """Zero every Fourier coefficient with spatial frequency \\|s\\| > 1/``d_min``, and
    multiply those kept by exp(+``unblur`` s²/4) (removing a blur added against aliasing).

    Parameters
    ----------
    data
        (nz, ny, nx) grid, treated as periodic.
    voxel_size
        (x, y, z) grid spacing, Å.
    d_min
        Resolution, Å.
    """
    transform = np.fft.rfftn(data)
    sz, sy = (np.fft.fftfreq(n, d=v) for n, v in zip(data.shape[:2], voxel_size[::-1][:2]))
    sx = np.fft.rfftfreq(data.shape[2], d=voxel_size[0])
    s2 = sz[:, None, None] ** 2 + sy[None, :, None] ** 2 + sx[None, None, :] ** 2
    transform *= np.exp(unblur * s2 / 4.0)
    transform[s2 > 1.0 / d_min ** 2] = 0.0
    return np.fft.irfftn(transform, s=data.shape, axes=(0, 1, 2)).astype(np.float32)


def gemmi_map(model: Model, d_min: float, margin: float = 20.0, rate: float = 2.0,
              cutoff: bool = True, b_iso: float | None = None) -> Map:
    """The model's density from gemmi's ``DensityCalculatorE``, band-limited at ``d_min``.

    Parameters
    ----------
    model
        Atoms (hydrogens are left out, as varref's model maps leave them out).
    d_min
        Resolution, Å; the grid spacing is ≈ ``d_min / (2 rate)`` (gemmi rounds the grid
        size up to FFT-friendly numbers, so the spacing may differ slightly per axis).
    margin
        Empty border around the atoms, Å. The calculation is periodic in the box and a sharp
        cutoff rings far out (the 3-D transform of a ball falls off as 1/r²): with a 10 Å
        border the ripples of one side wrap onto the other and bias a scale calibration by
        +0.07 % (1ubq at 3.5 Å); 20 Å keeps that below 0.02 %.
    rate
        gemmi's oversampling rate: 2 gives a spacing of ≈ d/4.
    cutoff
        Apply the sharp Fourier cutoff at 1/``d_min`` (:func:`sharp_cutoff`).
    b_iso
        Override every atom's B (Å²); default: the model's.

    Returns
    -------
    Map
        In the model's frame (the atoms sit where ``model.xyz`` says), true voxel size.
    """
    heavy = ~model.is_hydrogen
    xyz = model.xyz[heavy]
    low = xyz.min(axis=0) - margin
    size = xyz.max(axis=0) + margin - low
    structure = gemmi.Structure()
    structure.cell = gemmi.UnitCell(*size, 90, 90, 90)
    structure.spacegroup_hm = "P 1"
    chain = gemmi.Chain("A")
    residue = gemmi.Residue()
    residue.name = "UNK"
    residue.seqid = gemmi.SeqId(1, " ")
    b = model.b_iso[heavy] if b_iso is None else np.full(int(heavy.sum()), float(b_iso))
    for position, element, b_atom, occupancy in zip(xyz - low, model.element[heavy], b,
                                                    model.occupancy[heavy]):
        atom = gemmi.Atom()
        atom.name = str(element)
        atom.element = gemmi.Element(str(element))
        atom.pos = gemmi.Position(*position)
        atom.b_iso = float(b_atom)
        atom.occ = float(occupancy)
        residue.add_atom(atom)
    chain.add_residue(residue)
    gemmi_model = gemmi.Model("1")
    gemmi_model.add_chain(chain)
    structure.add_model(gemmi_model)
    calculator = gemmi.DensityCalculatorE()
    calculator.d_min = d_min
    calculator.rate = rate
    # Grid samples of atoms with a small B alias: the transform of the samples is the atoms'
    # transform summed over the reciprocal lattice, and content beyond Nyquist folds back below
    # 1/d — an artefact tied to the true lattice, which a scale calibration would read as
    # signal. As gemmi does for structure factors, the atoms are blurred until what folds back
    # into |s| <= 1/d (from |s| >= 2 s_Nyquist - 1/d) is below 1e-4 of the peak, and the blur is
    # taken off again (exp(+B s²/4)) inside 1/d.
    calculator.set_grid_cell_and_spacegroup(structure)
    fold = (2.0 * rate - 1.0) / d_min  # gemmi's spacing is at most d/(2 rate): Nyquist >= rate/d
    blur = max(0.0, 4.0 * np.log(1e4) / fold ** 2 - float(b.min())) if cutoff else 0.0
    calculator.blur = blur
    calculator.put_model_density_on_grid(structure[0])
    grid = calculator.grid
    data = np.ascontiguousarray(np.array(grid, copy=True).transpose(2, 1, 0))  # (x,y,z) → (z,y,x)
    voxel_size = size / np.array([grid.nu, grid.nv, grid.nw])
    if cutoff:
        data = sharp_cutoff(data, voxel_size, d_min, unblur=blur)
    return Map(data.astype(np.float32), low, voxel_size, [90.0, 90.0, 90.0],
               source=f"gemmi DensityCalculatorE of {model.source} at {d_min} Å")
