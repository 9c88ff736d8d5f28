"""Pixel-size calibration: recovers mis-set voxel sizes on simulated and real maps."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import xarray as xr

from varref.calibration import map_centre, parabola_optimum, run_pixel_scan, scaled_map
from varref.cli import main
from varref.ensemble.cluster import dask_client
from varref.maps import read_map, write_map
from varref.model import read_model
from varref.simulate import simulate_map

SCALES = np.round(np.arange(0.95, 1.0501, 0.005), 6)


@pytest.fixture(scope="module")
def client():
    with dask_client(workers=2, quiet=True) as connected:
        yield connected


def test_scaling_keeps_the_chosen_centre():
    from varref.maps import Map

    density = Map(np.zeros((10, 12, 14), np.float32), [3.0, -4.0, 5.0], [1.1, 1.2, 1.3], [90, 90, 90])
    scaled = scaled_map(density, 1.03)
    np.testing.assert_allclose(map_centre(scaled), map_centre(density), atol=1e-12)
    np.testing.assert_allclose(scaled.voxel_size, density.voxel_size * 1.03)
    point = np.array([7.0, 2.0, 9.0])
    about_point = scaled_map(density, 0.98, point)
    # the grid coordinate of the fixed point is unchanged
    np.testing.assert_allclose(about_point.fractional_index(point), density.fractional_index(point))


def test_parabola_vertex_and_uncertainty():
    s = np.linspace(0.97, 1.03, 13)
    exact = 0.9 - 40.0 * (s - 1.012) ** 2
    vertex, sigma, _ = parabola_optimum(s, exact)
    assert vertex == pytest.approx(1.012, abs=1e-9) and sigma < 1e-9
    noisy = exact + np.random.default_rng(0).normal(scale=1e-3, size=s.size)
    vertex, sigma, _ = parabola_optimum(s, noisy)
    assert abs(vertex - 1.012) < 5 * sigma and sigma > 0


@pytest.mark.parametrize("header_error", [1.02, 0.97])
def test_simulated_map_with_mis_set_header_is_recovered(client, shared, header_error):
    """The header voxel size is wrong by +2 % / -3 %: the scan finds 1/error within 0.1 %."""
    model = read_model(shared("maps/emd5778_trpv1_tm/transmem.pdb.renum.pdb"))
    truth = simulate_map(model, 3.0)
    wrong = replace(truth, voxel_size=truth.voxel_size * header_error)
    result = run_pixel_scan(client, model, wrong, 3.0, SCALES, progress=False)
    assert result["scale"] == pytest.approx(1.0 / header_error, rel=1e-3)
    np.testing.assert_allclose(result["best_voxel_size"], truth.voxel_size, rtol=1e-3)
    assert np.isfinite(result["scale_sigma"])


@pytest.mark.parametrize("map_file, model_file, resolution", [
    ("maps/emd5778_trpv1_tm/transmem.mrc", "maps/emd5778_trpv1_tm/transmem.pdb.renum.pdb", 3.4),
    ("maps/emd2566_ribosome_chain9/2566_3J6B_9.mrc", "maps/emd2566_ribosome_chain9/3J6B_9.pdb", 3.2),
])
def test_real_maps_optimum_near_deposited_and_mis_set_header_corrected(client, shared, map_file,
                                                                       model_file, resolution):
    model = read_model(shared(model_file))
    density = read_map(shared(map_file))
    deposited = run_pixel_scan(client, model, density, resolution, SCALES, brent=False, progress=False)
    assert abs(deposited["scale"] - 1.0) < 0.01
    wrong = replace(density, voxel_size=density.voxel_size * 1.03)
    corrected = run_pixel_scan(client, model, wrong, resolution, SCALES, brent=False, progress=False)
    np.testing.assert_allclose(corrected["best_voxel_size"], deposited["best_voxel_size"], rtol=2e-3)


def test_cli_writes_json_netcdf_plot_and_corrected_map(tmp_path, shared, capsys):
    model_path = shared("models/1crn.pdb")
    model = read_model(model_path)
    truth = simulate_map(model, 3.0)
    # as for a deposited model: the model sits in the mis-scaled density (scaled about it)
    from varref.calibration import scaling_centre

    write_map(scaled_map(truth, 1.02, scaling_centre(model)), tmp_path / "wrong.mrc")
    status = main(["pixel-scan", str(model_path), str(tmp_path / "wrong.mrc"), "--resolution", "3",
                   "--range", "0.96:1.02", "--step", "0.005", "--workers", "2",
                   "--json", str(tmp_path / "r.json"), "--output", str(tmp_path / "scan.nc"),
                   "--plots", str(tmp_path / "cal"), "--write-map", str(tmp_path / "fixed.mrc")])
    assert status == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert {"best_voxel_size", "scale", "scale_sigma"} <= set(report)
    assert report["scale"] == pytest.approx(1 / 1.02, rel=1e-3)
    scan = xr.open_dataset(tmp_path / "scan.nc", engine="scipy")
    assert scan.sizes["scale"] == 13 and float(scan["cc_mask"].max()) > 0.95
    fixed = read_map(tmp_path / "fixed.mrc")
    np.testing.assert_allclose(fixed.voxel_size, truth.voxel_size, rtol=1e-3)
    # scaled about the model centre: the model sits in the corrected map without refitting
    assert fixed.normalised().values_at(model.xyz).mean() > 0.98 * truth.normalised().values_at(model.xyz).mean()
    assert (tmp_path / "cal_scan.png").stat().st_size > 1000
    assert "best voxel size" in capsys.readouterr().out


def test_cli_rejects_a_bad_range(tmp_path, shared, capsys):
    status = main(["pixel-scan", str(shared("models/1crn.pdb")), str(tmp_path / "m.mrc"),
                   "--resolution", "3", "--range", "1.05:0.95"])
    assert status == 2 and "--range" in capsys.readouterr().err


def test_anisotropic_scale_is_recovered_per_axis(client, shared):
    model = read_model(shared("models/1crn.pdb"))
    truth = simulate_map(model, 3.0)
    error = np.array([1.02, 1.0, 0.985])
    wrong = replace(truth, voxel_size=truth.voxel_size * error)
    result = run_pixel_scan(client, model, wrong, 3.0, SCALES, anisotropic=True, progress=False)
    np.testing.assert_allclose(result["scale_xyz"], 1.0 / error, rtol=2e-3)
    np.testing.assert_allclose(result["best_voxel_size"], truth.voxel_size, rtol=2e-3)
