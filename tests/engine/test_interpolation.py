"""Tricubic / trilinear interpolation: exactness, gradients, out-of-bounds behaviour."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from varref.engine.interpolation import interpolate
from varref.engine.map_target import map_target_value_gradient

ORIGIN = np.array([-3.0, 1.5, 7.25])
VOXEL = np.array([0.9, 1.1, 0.8])
SHAPE = (18, 20, 22)  # (nz, ny, nx)


def grid_coordinates(shape=SHAPE, origin=ORIGIN, voxel=VOXEL):
    """Cartesian X, Y, Z of every grid point, each of shape (nz, ny, nx)."""
    iz, iy, ix = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    return origin[0] + ix * voxel[0], origin[1] + iy * voxel[1], origin[2] + iz * voxel[2]


def points_inside(rng, n, margin=1.0, shape=SHAPE, origin=ORIGIN, voxel=VOXEL):
    """Random Cartesian points whose tricubic stencil is inside the grid."""
    nz, ny, nx = shape
    upper = np.array([nx, ny, nz]) - 2.0 - margin
    u = rng.uniform(1.0 + margin, upper, size=(n, 3))
    return origin + u * voxel


def smooth_field(x, y, z):
    """Sum of a few Gaussians: smooth, non-polynomial test density."""
    centres = [(2.0, 8.0, 12.0, 3.0), (6.0, 12.0, 14.0, 5.0), (10.0, 14.0, 16.0, 2.0)]
    f = 0.0
    for cx, cy, cz, width in centres:
        f = f + np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / width)
    return f


def interpolate_gradient(data, origin, voxel, xyz, method="tricubic"):
    """Values and Cartesian gradients at points, through the production paths: values from
    ``interpolate``, gradients from the map target with unit weights (T = -sum rho, so
    dT/dx_i = -grad rho(x_i))."""
    _, minus_gradient = map_target_value_gradient(data, origin, voxel, xyz, method=method)
    return interpolate(data, origin, voxel, xyz, method), -minus_gradient


def finite_difference_gradient(data, xyz, method, step=1e-6):
    gradient = np.empty_like(xyz)
    for axis in range(3):
        shift = np.zeros(3)
        shift[axis] = step
        plus = interpolate(data, ORIGIN, VOXEL, xyz + shift, method)
        minus = interpolate(data, ORIGIN, VOXEL, xyz - shift, method)
        gradient[:, axis] = (plus - minus) / (2 * step)
    return gradient


def test_tricubic_reproduces_triquadratic_exactly():
    # Every polynomial of degree <= 2 in each variable (27 monomials incl. x^2 y^2 z^2).
    rng = np.random.default_rng(1)
    coefficients = rng.normal(size=(3, 3, 3))
    X, Y, Z = grid_coordinates()

    def field(x, y, z):
        return sum(coefficients[i, j, k] * x**i * y**j * z**k
                   for i in range(3) for j in range(3) for k in range(3))

    def gradient(x, y, z):
        gx = sum(coefficients[i, j, k] * i * x ** max(i - 1, 0) * y**j * z**k
                 for i in range(3) for j in range(3) for k in range(3))
        gy = sum(coefficients[i, j, k] * j * x**i * y ** max(j - 1, 0) * z**k
                 for i in range(3) for j in range(3) for k in range(3))
        gz = sum(coefficients[i, j, k] * k * x**i * y**j * z ** max(k - 1, 0)
                 for i in range(3) for j in range(3) for k in range(3))
        return np.stack([gx, gy, gz], axis=1)

    data = field(X, Y, Z)
    xyz = points_inside(rng, 500, margin=0.0)
    values, grads = interpolate_gradient(data, ORIGIN, VOXEL, xyz)
    expected = field(*xyz.T)
    scale = np.abs(data).max()
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(grads, gradient(*xyz.T), rtol=0, atol=1e-11 * scale)


def test_tricubic_cubic_error_is_the_known_catmull_rom_term():
    # The scheme is NOT exact for cubics (central-difference slopes are off by h^2 f'''/6).
    # For a cubic the error is known in closed form: x^3 -> x^3 + h^3 t(1-t)(1-2t), t the
    # fractional grid coordinate; lower-degree parts are exact; tensor products factor.
    rng = np.random.default_rng(2)
    X, Y, Z = grid_coordinates()
    a, b, c = 0.7, -0.4, 0.25

    def field(x, y, z):
        return a * x**3 + b * y**3 * z + c * z**3 + x * y - 2.0 * z**2

    def cubic_error(coordinate, axis):
        t = (coordinate - ORIGIN[axis]) / VOXEL[axis]
        t = t - np.floor(t)
        h = VOXEL[axis]
        return h**3 * t * (1 - t) * (1 - 2 * t), h**2 * (1 - 6 * t + 6 * t * t)

    data = field(X, Y, Z)
    xyz = points_inside(rng, 500, margin=0.0)
    x, y, z = xyz.T
    ex, dex = cubic_error(x, 0)
    ey, dey = cubic_error(y, 1)
    ez, dez = cubic_error(z, 2)
    # L(y^3 z) = L(y^3) L(z) = (y^3 + ey) z;  L(x^3) = x^3 + ex;  L(z^3) = z^3 + ez
    expected = field(x, y, z) + a * ex + b * ey * z + c * ez
    expected_gradient = np.stack([
        3 * a * x**2 + y + a * dex,
        3 * b * y**2 * z + x + b * dey * z,
        b * y**3 + 3 * c * z**2 - 4.0 * z + b * ey + c * dez,
    ], axis=1)
    values, grads = interpolate_gradient(data, ORIGIN, VOXEL, xyz)
    scale = np.abs(data).max()
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(grads, expected_gradient, rtol=0, atol=1e-11 * scale)
    # ... and the error really is there (not a vacuous test): it is of order h^3.
    assert np.abs(values - field(x, y, z)).max() > 1e-3


def test_tricubic_cubic_on_fine_grid_is_tight():
    # On a 0.05 Å grid the cubic error bound is |a| h^3 sqrt(3)/18 per cubic term.
    h = 0.05
    shape = (24, 24, 24)
    origin = np.array([0.3, -0.2, 0.1])
    voxel = np.full(3, h)
    X, Y, Z = grid_coordinates(shape, origin, voxel)
    data = X**3 - 2 * Y**3 + Z**3 + X * Y * Z
    rng = np.random.default_rng(3)
    xyz = points_inside(rng, 300, 0.0, shape, origin, voxel)
    values = interpolate(data, origin, voxel, xyz)
    x, y, z = xyz.T
    bound = (1 + 2 + 1) * h**3 * np.sqrt(3) / 18
    assert np.abs(values - (x**3 - 2 * y**3 + z**3 + x * y * z)).max() <= bound * (1 + 1e-9)
    assert bound < 5e-5


def test_trilinear_reproduces_trilinear_field():
    rng = np.random.default_rng(4)
    X, Y, Z = grid_coordinates()
    c = rng.normal(size=8)

    def field(x, y, z):
        return (c[0] + c[1] * x + c[2] * y + c[3] * z + c[4] * x * y + c[5] * y * z
                + c[6] * x * z + c[7] * x * y * z)

    data = field(X, Y, Z)
    xyz = points_inside(rng, 300, margin=0.0)
    values, grads = interpolate_gradient(data, ORIGIN, VOXEL, xyz, "trilinear")
    x, y, z = xyz.T
    expected_gradient = np.stack([
        c[1] + c[4] * y + c[6] * z + c[7] * y * z,
        c[2] + c[4] * x + c[5] * z + c[7] * x * z,
        c[3] + c[5] * y + c[6] * x + c[7] * x * y,
    ], axis=1)
    scale = np.abs(data).max()
    np.testing.assert_allclose(values, field(x, y, z), rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(grads, expected_gradient, rtol=0, atol=1e-11 * scale)


@pytest.mark.parametrize("method", ["tricubic", "trilinear"])
def test_gradient_matches_finite_differences(method):
    rng = np.random.default_rng(5)
    data = smooth_field(*grid_coordinates())  # float64 for finite differences
    xyz = points_inside(rng, 200)
    if method == "trilinear":
        # the trilinear gradient jumps at cell faces: keep away from them
        u = (xyz - ORIGIN) / VOXEL
        fractional = u - np.floor(u)
        xyz = xyz[np.all((fractional > 1e-3) & (fractional < 1 - 1e-3), axis=1)]
    _, grads = interpolate_gradient(data, ORIGIN, VOXEL, xyz, method)
    fd = finite_difference_gradient(data, xyz, method)
    relative_error = np.abs(grads - fd).max() / np.abs(fd).max()
    assert relative_error < 1e-4
    per_point = np.linalg.norm(grads - fd, axis=1) / np.maximum(
        np.linalg.norm(fd, axis=1), 1e-3 * np.abs(fd).max())
    assert per_point.max() < 1e-4


def test_tricubic_gradient_continuous_across_cell_faces():
    # C1 interpolant: the gradient just below and just above a face agree.
    data = smooth_field(*grid_coordinates())
    face_x = ORIGIN[0] + 7 * VOXEL[0]
    points = np.array([[face_x - 1e-9, 9.3, 14.1], [face_x + 1e-9, 9.3, 14.1]])
    _, grads = interpolate_gradient(data, ORIGIN, VOXEL, points)
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-6, atol=1e-9)


def test_float32_and_float64_grids_agree():
    rng = np.random.default_rng(6)
    data = smooth_field(*grid_coordinates())
    xyz = points_inside(rng, 100)
    v64, g64 = interpolate_gradient(data, ORIGIN, VOXEL, xyz)
    v32, g32 = interpolate_gradient(data.astype(np.float32), ORIGIN, VOXEL, xyz)
    np.testing.assert_allclose(v32, v64, atol=1e-6)
    np.testing.assert_allclose(g32, g64, atol=1e-5)


@pytest.mark.parametrize("method", ["tricubic", "trilinear"])
def test_outside_points_give_zero_value_and_force(method):
    nz, ny, nx = SHAPE
    data = np.ones(SHAPE, dtype=np.float32)
    # Stencil limits in fractional units: tricubic needs 1 <= u < n-2, trilinear 0 <= u < n-1.
    low, high = (1.0, 2.0) if method == "tricubic" else (0.0, 1.0)
    inside_u = np.array([[low, low, low], [nx - high - 1e-9, ny - high - 1e-9, 5.0]])
    outside_u = np.array([
        [low - 1e-9, 5.0, 5.0],
        [5.0, ny - high, 5.0],
        [5.0, 5.0, nz - high],
        [-100.0, 5.0, 5.0],
        [5.0, 1e300, 5.0],
        [np.nan, 5.0, 5.0],
        [5.0, np.inf, 5.0],
        [5.0, 5.0, -np.inf],
    ])
    values, grads = interpolate_gradient(data, ORIGIN, VOXEL, ORIGIN + outside_u * VOXEL,
                                         method)
    assert np.all(values == 0.0) and np.all(grads == 0.0)
    values, grads = interpolate_gradient(data, ORIGIN, VOXEL, ORIGIN + inside_u * VOXEL,
                                         method)
    np.testing.assert_allclose(values, 1.0)
    np.testing.assert_allclose(grads, 0.0, atol=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=3,
                max_size=3))
def test_any_point_is_safe(point):
    # Never crashes or reads out of bounds; result is finite; outside the grid it is 0.
    data = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    xyz = np.array([point], dtype=np.float64)
    for method, low, high in (("tricubic", 1.0, 2.0), ("trilinear", 0.0, 1.0)):
        values, grads = interpolate_gradient(data, ORIGIN, VOXEL, xyz, method)
        assert np.all(np.isfinite(values)) and np.all(np.isfinite(grads))
        with np.errstate(invalid="ignore", over="ignore"):
            u = (xyz[0] - ORIGIN) * (1.0 / VOXEL)  # as the kernel computes it
            n_xyz = np.array(SHAPE[::-1], dtype=float)
            inside = bool(np.all((u >= low) & (u < n_xyz - high)))
        if not inside:
            assert values[0] == 0.0 and np.all(grads == 0.0)


def test_rejects_bad_input():
    data = np.zeros(SHAPE, dtype=np.float32)
    with pytest.raises(ValueError):
        interpolate(data, ORIGIN, VOXEL, np.zeros((3, 2)))
    with pytest.raises(ValueError):
        interpolate(data[0], ORIGIN, VOXEL, np.zeros((3, 3)))
    with pytest.raises(ValueError):
        interpolate(data, ORIGIN, np.array([1.0, 0.0, 1.0]), np.zeros((3, 3)))
    with pytest.raises(ValueError):
        interpolate(data, ORIGIN, VOXEL, np.zeros((3, 3)), method="quintic")
