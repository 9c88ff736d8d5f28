"""Gaussian model map: agreement with gemmi, normalisation, continuity, chain rule."""

from pathlib import Path

import numpy as np
import pytest

from varref.engine.correlation import pearson_cc
from varref.engine.model_map import (
    add_model_density,
    atom_gaussians,
    coordinate_gradient_from_map_gradient,
    cutoff_radii,
    model_map,
    resolution_blur,
    scattering_coefficients,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared"


def read_crambin():
    """1crn atoms as arrays (gemmi), or skip when ../shared is absent."""
    path = SHARED / "data" / "models" / "1crn.pdb"
    if not path.exists():
        pytest.skip("shared data not available: data/models/1crn.pdb")
    gemmi = pytest.importorskip("gemmi")
    structure = gemmi.read_structure(str(path))
    structure.remove_hydrogens()
    atoms = [atom for chain in structure[0] for residue in chain for atom in residue]
    xyz = np.array([atom.pos.tolist() for atom in atoms])
    elements = [atom.element.name for atom in atoms]
    b_iso = np.array([atom.b_iso for atom in atoms])
    occupancy = np.array([atom.occ for atom in atoms])
    return structure, xyz, elements, b_iso, occupancy


def test_agrees_with_gemmi_density_calculator_e():
    gemmi = pytest.importorskip("gemmi")
    structure, xyz, elements, b_iso, occupancy = read_crambin()
    # Put crambin in the middle of an orthogonal P1 box (gemmi's grid is periodic, ours
    # is not, so keep the atoms far from the edges).
    box = np.array([64.0, 56.0, 60.0])
    shift = box / 2 - xyz.mean(axis=0)
    for chain in structure[0]:
        for residue in chain:
            for atom in residue:
                atom.pos = gemmi.Position(*(np.array(atom.pos.tolist()) + shift))
    structure.cell = gemmi.UnitCell(*box, 90, 90, 90)
    structure.spacegroup_hm = "P 1"
    blur = resolution_blur(2.5)
    calculator = gemmi.DensityCalculatorE()
    calculator.d_min = 2.5
    calculator.blur = blur
    calculator.set_grid_cell_and_spacegroup(structure)
    calculator.put_model_density_on_grid(structure[0])
    reference = np.array(calculator.grid, copy=False).transpose(2, 1, 0)  # (w,v,u)=(z,y,x)
    voxel = box / np.array(reference.shape[::-1])

    coeff_a, coeff_b = scattering_coefficients(elements)
    ours = model_map(xyz + shift, reference.shape, np.zeros(3), voxel, coeff_a, coeff_b,
                     b_iso, occupancy, blur)
    assert ours.dtype == np.float32 and ours.shape == reference.shape
    # Same Peng (1996) tables and the same real-space formula: agreement is essentially
    # exact, up to the two programs' different truncation radii.
    assert pearson_cc(ours, reference) > 0.9999
    assert ours.sum() / reference.sum() == pytest.approx(1.0, abs=1e-3)
    assert np.abs(ours - reference).max() < 1e-3 * reference.max()


def test_scattering_coefficients_match_gemmi_tables():
    gemmi = pytest.importorskip("gemmi")
    a, b = scattering_coefficients(["C", "FE", "Fe", "n"])
    assert a.shape == b.shape == (4, 5)
    np.testing.assert_allclose(a[0], gemmi.Element("C").c4322.a)
    np.testing.assert_allclose(b[1], gemmi.Element("Fe").c4322.b)
    np.testing.assert_array_equal(a[1], a[2])
    np.testing.assert_allclose(a[3], gemmi.Element("N").c4322.a)
    with pytest.raises(ValueError):
        scattering_coefficients(["Qq"])


def test_single_atom_integrates_to_f0_and_peaks_at_its_centre():
    # The integral of the atom image is f(s=0) = sum a_k (times occupancy); exact up to
    # the truncation, which removes about the cutoff fraction.
    coeff_a, coeff_b = scattering_coefficients(["O"])
    voxel = np.full(3, 0.2)
    n = 80
    origin = np.full(3, -n * 0.2 / 2)
    centre = np.array([[0.03, -0.05, 0.07]])
    density = model_map(centre, (n, n, n), origin, voxel, coeff_a, coeff_b, 15.0,
                        np.array([0.8]), dtype=np.float64)
    integral = density.sum() * voxel.prod()
    assert integral == pytest.approx(0.8 * coeff_a.sum(), rel=2e-3)
    peak = np.unravel_index(np.argmax(density), density.shape)
    np.testing.assert_allclose(origin + np.array(peak[::-1]) * voxel, centre[0], atol=0.11)


def test_blur_rule_and_resolution_likeness():
    # B_blur = 4 d^2; the blurred Gaussian map resembles a resolution-truncated Fourier
    # synthesis (what Phenix computes) better than the unblurred one.
    assert resolution_blur(3.0) == pytest.approx(36.0)
    with pytest.raises(ValueError):
        resolution_blur(0.0)
    _, xyz, elements, b_iso, _ = read_crambin()
    coeff_a, coeff_b = scattering_coefficients(elements)
    d, voxel_size, n = 3.0, 0.75, 80
    voxel = np.full(3, voxel_size)
    origin = xyz.mean(axis=0) - n * voxel_size / 2
    b_atoms = b_iso + 20.0
    sharp = model_map(xyz, (n, n, n), origin, voxel, coeff_a, coeff_b, b_atoms,
                      dtype=np.float64)
    spectrum = np.fft.rfftn(sharp)
    freq = np.fft.fftfreq(n, voxel_size)
    freq_x = np.fft.rfftfreq(n, voxel_size)
    s2 = freq[:, None, None] ** 2 + freq[None, :, None] ** 2 + freq_x[None, None, :] ** 2
    spectrum[s2 > 1.0 / d**2] = 0.0
    truncated = np.fft.irfftn(spectrum, s=(n, n, n), axes=(0, 1, 2))
    blurred = model_map(xyz, (n, n, n), origin, voxel, coeff_a, coeff_b, b_atoms,
                        blur=resolution_blur(d), dtype=np.float64)
    cc_blurred = pearson_cc(blurred, truncated)
    assert cc_blurred > 0.95
    assert cc_blurred > pearson_cc(sharp, truncated) + 0.01


def test_map_is_continuous_where_grid_points_cross_the_cutoff_sphere():
    # Truncation is shifted so each atom reaches zero at its cutoff radius R: moving the
    # atom so that a grid point enters its sphere changes the map continuously. Place the
    # atom exactly where grid point (5, 5, 5) sits at distance R and step across.
    coeff_a, coeff_b = scattering_coefficients(["C"])
    cutoff = 1e-2  # coarse, so that an unshifted truncation would jump visibly
    _, exponent = atom_gaussians(coeff_a, coeff_b, 30.0)
    radius = cutoff_radii(exponent, cutoff)[0]
    y0, z0 = 5.3, 4.8
    x_cross = 5.0 - np.sqrt(radius**2 - (5.0 - y0) ** 2 - (5.0 - z0) ** 2)
    kwargs = dict(shape=(12, 12, 12), origin=np.zeros(3), voxel_size=np.ones(3),
                  coeff_a=coeff_a, coeff_b=coeff_b, b_iso=30.0, cutoff=cutoff,
                  dtype=np.float64)
    outside = model_map(np.array([[x_cross - 1e-9, y0, z0]]), **kwargs)
    inside = model_map(np.array([[x_cross + 1e-9, y0, z0]]), **kwargs)
    assert outside[5, 5, 5] == 0.0  # point not yet in the sphere
    assert abs(inside[5, 5, 5]) < 1e-8 * inside.max()  # entered with (almost) zero value
    # without the shift the point would have jumped by the atom's density at R:
    amplitude, _ = atom_gaussians(coeff_a, coeff_b, 30.0)
    assert np.sum(amplitude * np.exp(-exponent * radius**2)) > 1e-4 * inside.max()


def test_coordinate_gradient_is_the_chain_rule():
    # T = sum_g W(g) rho(g): dT/dx from the adjoint kernel vs finite differences.
    rng = np.random.default_rng(21)
    elements = ["C", "N", "O", "S", "C", "C"]
    coeff_a, coeff_b = scattering_coefficients(elements)
    xyz = rng.uniform(5, 11, size=(6, 3))
    b_iso = rng.uniform(10, 40, 6)
    origin = np.array([0.5, -0.2, 0.3])
    voxel = np.array([0.8, 0.7, 0.9])
    shape = (20, 22, 20)
    weights = rng.normal(size=shape)
    amplitude, exponent = atom_gaussians(coeff_a, coeff_b, b_iso, blur=15.0)
    radius = cutoff_radii(exponent, 1e-6)

    def target(positions):
        grid = np.zeros(shape)
        add_model_density(grid, origin, voxel, positions, amplitude, exponent, radius)
        return float(np.sum(weights * grid))

    gradient = coordinate_gradient_from_map_gradient(weights, origin, voxel, xyz, amplitude,
                                                     exponent, radius)
    fd = np.zeros_like(xyz)
    step = 1e-6
    for i in range(len(xyz)):
        for axis in range(3):
            plus, minus = xyz.copy(), xyz.copy()
            plus[i, axis] += step
            minus[i, axis] -= step
            fd[i, axis] = (target(plus) - target(minus)) / (2 * step)
    assert np.abs(gradient - fd).max() / np.abs(fd).max() < 1e-4


def test_atoms_off_the_grid_are_safe():
    coeff_a, coeff_b = scattering_coefficients(["C"] * 4)
    xyz = np.array([[1e9, 0, 0], [np.nan, 0, 0], [-np.inf, 1, 1], [3.0, 3.0, 3.0]])
    density = model_map(xyz, (10, 10, 10), np.zeros(3), np.ones(3), coeff_a, coeff_b, 20.0)
    single = model_map(xyz[3:], (10, 10, 10), np.zeros(3), np.ones(3), coeff_a[3:],
                       coeff_b[3:], 20.0)
    np.testing.assert_array_equal(density, single)
    with pytest.raises(ValueError):
        model_map(xyz, (10, 10, 10), np.zeros(3), np.ones(3), coeff_a, coeff_b, -100.0)


def _direct_map_and_gradient(xyz, amplitude, exponent, radius, origin, voxel, shape, weights):
    """Brute force over every grid point: the truncated, shifted Gaussians and the weighted
    coordinate gradient, with one exp() per point and Gaussian (the kernels' reference)."""
    z, y, x = np.meshgrid(*(origin[axis] + voxel[axis] * np.arange(shape[2 - axis])
                            for axis in (2, 1, 0)), indexing="ij")
    points = np.stack([x, y, z], axis=-1)
    density = np.zeros(shape)
    gradient = np.zeros_like(xyz)
    for i in range(len(xyz)):
        d = points - xyz[i]
        r2 = np.sum(d * d, axis=-1)
        inside = r2 <= radius[i] ** 2
        gauss = amplitude[i] * np.exp(-exponent[i] * r2[..., None])
        at_r = np.sum(amplitude[i] * np.exp(-exponent[i] * radius[i] ** 2))
        density += np.where(inside, gauss.sum(-1) - at_r, 0.0)
        slope = np.sum(gauss * 2.0 * exponent[i], axis=-1)  # d rho / d x_i = slope * d
        gradient[i] = np.sum((weights * inside * slope)[..., None] * d, axis=(0, 1, 2))
    return density, gradient


@pytest.mark.parametrize("n_gauss", [1, 2, 3, 4, 5, 6])
def test_kernels_equal_a_direct_sum_for_any_number_of_gaussians(n_gauss):
    # The kernels tabulate each axis by recurrence and write the sums out for up to three
    # Gaussians and for 4-5; a brute-force evaluation must agree for each, and for 6 (generic),
    # with Gaussians 1:400 apart in width (hydrogen-like narrow terms would underflow a
    # recurrence started at the sphere's edge) and atoms whose centre is off the grid.
    rng = np.random.default_rng(n_gauss)
    n_atoms = 7
    origin, voxel, shape = np.array([0.3, -0.4, 0.1]), np.array([0.7, 0.6, 0.8]), (17, 19, 16)
    xyz = rng.uniform(1.0, 10.0, size=(n_atoms, 3))
    xyz[0] = [-1.2, 5.0, 5.0]  # centre left of the grid, sphere reaching in
    xyz[1] = [5.0, 12.5, 13.6]  # beyond the far corner in y and z
    widths = np.geomspace(0.4, 160.0, n_gauss) if n_gauss > 1 else np.array([30.0])
    exponent = np.tile(4.0 * np.pi**2 / widths, (n_atoms, 1))
    amplitude = rng.uniform(0.5, 2.0, size=(n_atoms, n_gauss))
    radius = cutoff_radii(exponent, 1e-5)
    weights = rng.normal(size=shape)
    weights[rng.random(shape) < 0.3] = 0.0  # the CC gradient's map is zero off its mask
    expected_map, expected_gradient = _direct_map_and_gradient(
        xyz, amplitude, exponent, radius, origin, voxel, shape, weights)
    density = add_model_density(np.zeros(shape), origin, voxel, xyz, amplitude, exponent, radius)
    gradient = coordinate_gradient_from_map_gradient(weights, origin, voxel, xyz, amplitude,
                                                     exponent, radius)
    assert np.abs(expected_map).max() > 0 and np.abs(expected_gradient).max() > 0
    np.testing.assert_allclose(density, expected_map, rtol=0, atol=1e-12 * np.abs(expected_map).max())
    np.testing.assert_allclose(gradient, expected_gradient, rtol=0,
                               atol=1e-12 * np.abs(expected_gradient).max())
