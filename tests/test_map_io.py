"""Map reading/writing: headers (origin, nstart, axis order, voxel size), MTZ, boxing, normalising."""

from __future__ import annotations

import gemmi
import mrcfile
import numpy as np
import pytest

from varref.maps import Map, read_map, write_map
from varref.model import read_model

# (map, model, minimum mean density z-score at the atoms); SOURCES.txt beside each map
FITTED_PAIRS = [
    ("maps/emd2566_ribosome_chain9/2566_3J6B_9.mrc", "maps/emd2566_ribosome_chain9/3J6B_9.pdb"),
    ("maps/emd2566_ribosome_chain9/2566_3J6B_9_resampled1A.mrc", "maps/emd2566_ribosome_chain9/3J6B_9.pdb"),
    ("maps/emd5778_trpv1_tm/transmem.mrc", "maps/emd5778_trpv1_tm/transmem.pdb.renum.pdb"),
    ("maps/emd5168_factin/emd_5168.map", "maps/emd5168_factin/3MFP.pdb"),
    ("maps/emd5168_factin/emd_5168_monomer.mrc", "maps/emd5168_factin/3MFP.pdb"),
    ("maps/emd5168_factin/emd_5170.map", "maps/emd5168_factin/3MFP.pdb"),
    ("maps/emd5168_factin/emd_5168.map", "maps/emd5168_factin/1J6Z.pdb"),
]


@pytest.mark.parametrize("map_file, model_file", FITTED_PAIRS)
def test_deposited_model_sits_in_its_density(shared, map_file, model_file):
    density = read_map(shared(map_file)).normalised()
    model = read_model(shared(model_file))
    heavy = model.xyz[~model.is_hydrogen]
    # the monomer crop of F-actin cuts a few surface atoms off; everything else is whole
    assert density.contains(heavy).mean() > 0.99
    z = density.values_at(heavy)
    assert z.mean() > 1.3, "atoms should sit well above the map mean (z-score)"
    assert np.mean(z > 0) > 0.65  # 6.6 Å F-actin maps blur side chains into solvent


def test_unfitted_groel_is_recognisably_not_fitted(shared):
    """1oel is the X-ray model before rigid fitting (SOURCES.txt): it must NOT look fitted."""
    density = read_map(shared("maps/emd1997_groel_unfitted/1997.map")).normalised()
    model = read_model(shared("maps/emd1997_groel_unfitted/1oel.pdb"))
    assert density.values_at(model.xyz).mean() < 0.5


@pytest.mark.parametrize("name", ["EMD-3001.map", "EMD-3197.map"])
def test_axis_order_and_nstart_agree_with_gemmi(shared, name):
    """EMD-3001 has axis order 3,1,2 and non-zero starts; gemmi's reordering is the reference."""
    path = shared(f"maps/io_only/{name}")
    mine = read_map(path)
    reference = gemmi.read_ccp4_map(str(path))
    reference.setup(float("nan"), gemmi.MapSetup.ReorderOnly)
    np.testing.assert_array_equal(np.array(reference.grid, copy=False).transpose(2, 1, 0), mine.data)
    # placement: voxel [iz, iy, ix] is cell grid point start + (ix, iy, iz)
    full = gemmi.read_ccp4_map(str(path))
    full.setup(float("nan"), gemmi.MapSetup.Full)
    start = np.round(mine.origin / mine.voxel_size).astype(int)
    rng = np.random.default_rng(1)
    for _ in range(100):
        ix, iy, iz = (int(rng.integers(0, n)) for n in mine.shape_xyz)
        expected = full.grid.get_value(*(int(v) for v in start + (ix, iy, iz)))
        assert expected == mine.data[iz, iy, ix]


def test_emd3001_header_values(shared):
    mine = read_map(shared("maps/io_only/EMD-3001.map"))
    assert mine.data.shape == (73, 25, 43)  # (z, y, x) after undoing axis order 3,1,2
    np.testing.assert_allclose(mine.voxel_size, [17.93 / 40, 4.71 / 12, 33.03 / 72], rtol=1e-5)
    np.testing.assert_allclose(mine.origin, [-21 * 17.93 / 40, -12 * 4.71 / 12, 0.0], rtol=1e-5)
    assert not mine.is_orthogonal  # monoclinic crystal map: readable, not refinable
    with pytest.raises(Exception, match="non-orthogonal"):
        mine.require_orthogonal()


@pytest.mark.parametrize("origin", [[-12.0, 4.0, 30.0], [3.3, -7.71, 0.05]])
def test_write_read_round_trip(tmp_path, origin):
    rng = np.random.default_rng(2)
    original = Map(rng.normal(size=(9, 7, 5)).astype(np.float32), origin, [1.0, 1.0, 1.0], [90, 90, 90])
    original.voxel_size = np.array([1.0, 1.1, 1.2])
    original.origin = np.round(np.array(origin) / original.voxel_size) * original.voxel_size \
        if origin[0] == -12.0 else np.array(origin)
    write_map(original, tmp_path / "m.mrc")
    again = read_map(tmp_path / "m.mrc")
    np.testing.assert_array_equal(again.data, original.data)
    np.testing.assert_allclose(again.origin, original.origin, atol=1e-4)
    np.testing.assert_allclose(again.voxel_size, original.voxel_size, rtol=1e-6)
    # gemmi (which ignores ORIGIN) agrees whenever the origin is a whole number of voxels
    if origin[0] == -12.0:
        ccp4 = gemmi.read_ccp4_map(str(tmp_path / "m.mrc"))
        assert [ccp4.header_i32(k) for k in (5, 6, 7)] == np.round(
            original.origin / original.voxel_size).astype(int).tolist()


def test_mtz_map_coefficients_match_the_map_they_came_from(tmp_path):
    """Make a smooth map, turn it into F/PHI with gemmi, write MTZ, read it back through varref."""
    cell = gemmi.UnitCell(30.0, 32.0, 28.0, 90, 90, 90)
    shape = (60, 64, 56)  # (nu, nv, nw) = x, y, z, 0.5 Å spacing
    grid_xyz = np.stack(np.meshgrid(*[np.arange(n) * 0.5 for n in shape], indexing="ij"), -1)
    centres = np.array([[10.0, 12.0, 9.0], [18.0, 20.0, 14.0], [15.0, 8.0, 20.0]])
    values = sum(np.exp(-np.sum((grid_xyz - c) ** 2, axis=-1) / (2 * 2.0**2)) for c in centres)
    grid = gemmi.FloatGrid(values.astype(np.float32), cell, gemmi.SpaceGroup("P 1"))
    asu = gemmi.transform_map_to_f_phi(grid).prepare_asu_data(dmin=1.5)
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = gemmi.SpaceGroup("P 1")
    mtz.set_cell_for_all(cell)
    mtz.add_dataset("sim")
    mtz.add_column("FWT", "F")
    mtz.add_column("PHWT", "P")
    data = np.column_stack([asu.miller_array, np.abs(asu.value_array), np.angle(asu.value_array, deg=True)])
    mtz.set_data(data.astype(np.float32))
    mtz.write_to_file(str(tmp_path / "coefficients.mtz"))

    density = read_map(tmp_path / "coefficients.mtz")
    np.testing.assert_allclose(density.voxel_size * density.shape_xyz, [30.0, 32.0, 28.0], rtol=1e-6)
    points = np.random.default_rng(3).uniform([5, 5, 5], [25, 27, 23], size=(300, 3))
    expected = sum(np.exp(-np.sum((points - c) ** 2, axis=-1) / (2 * 2.0**2)) for c in centres)
    observed = density.values_at(points, order=3)
    assert np.corrcoef(expected, observed)[0, 1] > 0.99


def test_box_around_model_and_normalise(shared):
    density = read_map(shared("maps/emd5168_factin/emd_5168.map"))
    model = read_model(shared("maps/emd5168_factin/3MFP.pdb"))
    boxed = density.box_around(model.xyz, margin=5.0)
    assert all(b < f for b, f in zip(boxed.data.shape, density.data.shape))
    inside = density.contains(model.xyz)
    assert boxed.contains(model.xyz[inside]).all()
    # same grid, same values: the box is a window onto the original
    np.testing.assert_allclose(boxed.values_at(model.xyz[inside]), density.values_at(model.xyz[inside]),
                               rtol=1e-5, atol=1e-6)
    normalised = boxed.normalised()
    assert abs(float(normalised.data.mean())) < 1e-4
    assert float(np.sqrt(np.mean(normalised.data.astype(np.float64) ** 2))) == pytest.approx(1.0, abs=1e-4)


def test_non_float_modes_are_converted(tmp_path):
    with mrcfile.new(str(tmp_path / "int16.mrc")) as mrc:
        mrc.set_data(np.arange(60, dtype=np.int16).reshape(3, 4, 5))
        mrc.voxel_size = 2.0
    density = read_map(tmp_path / "int16.mrc")
    assert density.data.dtype == np.float32
    assert density.data[2, 3, 4] == 59.0
    np.testing.assert_allclose(density.voxel_size, [2.0, 2.0, 2.0])
