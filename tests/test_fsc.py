"""Fourier shell correlation: definitions, statistics, half maps, cross-validation, outputs."""

from __future__ import annotations

import dataclasses
import doctest
import json

import numpy as np
import pytest
import xarray as xr

import varref
import varref.fsc as fsc_module
from varref.errors import InputError
from varref.fsc import (average_map, band_limited_model_map, crossing_resolution, cross_validate,
                        fsc, fsc_average, fsc_summary, full_map_fsc, model_map_fsc, model_mask,
                        plot_fsc, read_half_maps, write_fsc)
from varref.maps import Map, read_map, write_map
from varref.model import read_model
from varref.simulate import simulate_map


def noise_map(shape, voxel, seed, origin=(0.0, 0.0, 0.0)):
    data = np.random.default_rng(seed).normal(size=shape)
    return Map(data, origin, voxel, [90, 90, 90], source=f"noise{seed}.mrc")


def low_pass(density: Map, resolution: float) -> Map:
    """A map truncated at ``resolution`` in Fourier space (what Phenix calls a map at d)."""
    transform = np.fft.rfftn(density.data.astype(np.float64))
    nz, ny, nx = density.data.shape
    fz = np.fft.fftfreq(nz, density.voxel_size[2])[:, None, None]
    fy = np.fft.fftfreq(ny, density.voxel_size[1])[None, :, None]
    fx = np.fft.rfftfreq(nx, density.voxel_size[0])[None, None, :]
    transform[fx**2 + fy**2 + fz**2 > 1.0 / resolution**2] = 0.0
    data = np.fft.irfftn(transform, s=density.data.shape, axes=(0, 1, 2))
    return dataclasses.replace(density, data=data.astype(np.float32))


@pytest.fixture(scope="module")
def helix():
    return varref.example_helix(30)


@pytest.fixture(scope="module")
def long_helix_halves():
    """Four independent noisy maps (SNR 1 each) of the 70-residue helix at 3 Å on one grid."""
    model = varref.example_helix(70)
    first = simulate_map(model, 3.0, snr=1.0, seed=1)
    return model, [first] + [simulate_map(model, 3.0, snr=1.0, seed=k, grid=first) for k in (2, 3, 4)]


# --------------------------------------------------------------------------- definitions


@pytest.mark.parametrize("shape, voxel", [((32, 32, 32), (1.0, 1.0, 1.0)),
                                          ((21, 30, 44), (1.3, 1.1, 0.9))])
def test_fsc_of_a_map_with_itself_is_one_in_every_shell(helix, shape, voxel):
    density = noise_map(shape, voxel, seed=5)
    for mask in (None, np.random.default_rng(1).uniform(0.2, 1.0, size=shape)):
        curve = fsc(density, density, mask=mask)
        np.testing.assert_allclose(curve["fsc"], 1.0, atol=1e-12)
    simulated = simulate_map(helix, 3.0, snr=3.0, seed=1)
    curve = fsc(simulated, simulated, mask=model_mask(helix, helix.xyz, simulated))
    np.testing.assert_allclose(curve["fsc"], 1.0, atol=1e-12)


def test_shells_are_labelled_and_count_every_coefficient_of_the_full_transform():
    shape, voxel = (21, 30, 44), np.array([1.3, 1.1, 0.9])   # (nz, ny, nx), (vx, vy, vz)
    curve = fsc(noise_map(shape, voxel, 1), noise_map(shape, voxel, 2))
    assert curve["s"].attrs["units"] == "Å⁻¹" and curve["resolution"].attrs["units"] == "Å"
    np.testing.assert_allclose(curve["resolution"], 1.0 / curve["s"])
    # default: shell width = coarsest reciprocal spacing 1/(n v), up to the coarsest Nyquist
    width = max(1.0 / (44 * 1.3), 1.0 / (30 * 1.1), 1.0 / (21 * 0.9))
    s_max = min(0.5 / 1.3, 0.5 / 1.1, 10 / (21 * 0.9))
    assert curve.attrs["shell_width"] == pytest.approx(s_max / np.floor(s_max / width))
    np.testing.assert_allclose(np.diff(curve["s"]), curve.attrs["shell_width"])
    # counts: the coefficients of the full (not half) transform in each shell, DC left out
    fz = np.fft.fftfreq(21, 0.9)[:, None, None]
    fy = np.fft.fftfreq(30, 1.1)[None, :, None]
    fx = np.fft.fftfreq(44, 1.3)[None, None, :]
    k = np.rint(np.sqrt(fx**2 + fy**2 + fz**2) / curve.attrs["shell_width"]).astype(int)
    expected = np.bincount(k.ravel(), minlength=curve.sizes["s"] + 1)[1: curve.sizes["s"] + 1]
    np.testing.assert_array_equal(curve["n_coefficients"], expected)


def test_independent_noise_maps_correlate_only_within_their_statistics():
    """FSC of independent white noise: mean 0, standard deviation 1/sqrt(N_shell)."""
    a, b = noise_map((64, 64, 64), (1.1,) * 3, 3), noise_map((64, 64, 64), (1.1,) * 3, 4)
    curve = fsc(a, b)
    z = np.asarray(curve["fsc"]) * np.sqrt(np.asarray(curve["n_coefficients"]))
    assert curve.sizes["s"] == 32
    assert np.mean(np.abs(z) < 3.0) >= 0.9 and np.all(np.abs(z) < 4.5)
    # pooled over ten pairs (240 shells, standard error of the s.d. ~0.05): a Friedel-
    # weighting error would scale the s.d. by sqrt(2) or 1/sqrt(2)
    z = np.concatenate([
        np.asarray((c := fsc(noise_map((48, 48, 48), (1.0,) * 3, 10 + 2 * k),
                             noise_map((48, 48, 48), (1.0,) * 3, 11 + 2 * k)))["fsc"])
        * np.sqrt(np.asarray(c["n_coefficients"])) for k in range(10)])
    assert 0.87 < np.std(z) < 1.13 and abs(np.mean(z)) < 0.25


def test_fsc_average_and_threshold_crossing():
    s = np.array([0.1, 0.2, 0.3, 0.4])
    curve = xr.DataArray([0.9, 0.7, 0.3, np.nan], dims="s", coords={"s": s})
    counts = xr.DataArray([10, 30, 60, 100], dims="s", coords={"s": s})
    assert fsc_average(curve, counts, 1 / 0.3) == pytest.approx((9 + 21 + 18) / 100)
    assert fsc_average(curve, counts, 1.0) == pytest.approx((9 + 21 + 18) / 100)  # NaN left out
    assert fsc_average(curve, counts, 1 / 0.2) == pytest.approx((9 + 21) / 40)
    assert crossing_resolution(curve, 0.5) == pytest.approx(1 / 0.25)
    assert crossing_resolution(curve, 0.95) != crossing_resolution(curve, 0.95)   # never above
    low_first = xr.DataArray([0.4, 0.9, 0.7, 0.3], dims="s", coords={"s": s})
    assert crossing_resolution(low_first, 0.5) == pytest.approx(1 / 0.35)
    above = xr.DataArray([0.9, 0.8, 0.7], dims="s", coords={"s": s[:3]})
    assert crossing_resolution(above, 0.5) == pytest.approx(1 / 0.35)   # the Nyquist edge


def test_docstring_examples_run():
    failures, attempted = doctest.testmod(fsc_module, optionflags=doctest.ELLIPSIS)
    assert attempted > 20 and failures == 0


# --------------------------------------------------------------------------- model maps


@pytest.mark.parametrize("resolution", [3.0, 4.0, 6.0])
def test_map_truncated_at_d_crosses_half_near_d(helix, resolution):
    """A noise-free model map truncated at d (Phenix's map at d) crosses 0.5 within 15 % of d."""
    density = low_pass(simulate_map(helix, resolution), resolution)
    found = fsc_summary(model_map_fsc(helix, None, density, resolution, mask=False))["d_fsc05_model"]
    assert found == pytest.approx(resolution, rel=0.15)


@pytest.mark.parametrize("resolution", [3.0, 6.0])
def test_fsc_ignores_a_resolution_blur(helix, resolution):
    """The FSC is blind to a radial filter: a Gaussian-blurred noise-free map (simulate_map)
    correlates with the unblurred model map to Nyquist, so only noise or truncation makes
    the FSC fall, and its 0.5-crossing is the Nyquist limit whatever the blur."""
    density = simulate_map(helix, resolution)
    ds = model_map_fsc(helix, None, density, resolution, mask=False)
    assert float(ds["fsc_model"].min()) > 0.9
    assert fsc_summary(ds)["d_fsc05_model"] == pytest.approx(ds.attrs["nyquist_resolution"])
    if resolution == 3.0:
        # masked as well, while the blur leaves the highest shells a few % of the signal
        # (a much stronger blur lets the mask spill low-resolution power into them)
        masked = model_map_fsc(helix, None, density, resolution)
        assert float(masked["fsc_model"].min()) > 0.95


def test_band_limited_model_map_converges_with_oversampling(helix):
    grid = simulate_map(helix, 2.5)   # 0.83 Å voxels
    default = band_limited_model_map(helix, helix.xyz, grid)   # 1.5: not an integer ratio
    twice = band_limited_model_map(helix, helix.xyz, grid, oversample=2)
    four = band_limited_model_map(helix, helix.xyz, grid, oversample=4)
    once = band_limited_model_map(helix, helix.xyz, grid, oversample=1)
    rms = np.sqrt(np.mean(four.astype(float) ** 2))
    assert np.sqrt(np.mean((twice - four) ** 2)) < 1e-3 * rms
    assert np.sqrt(np.mean((default - four) ** 2)) < 1e-3 * rms
    # B = 1 Å² atoms on the map's own grid: aliasing is visible without oversampling
    assert np.sqrt(np.mean((once - four) ** 2)) > 1e-2 * rms


@pytest.mark.parametrize("shape", [(15, 17, 19), (16, 18, 20)])
def test_band_limited_model_map_equals_the_fourier_sum_of_its_atoms(shape):
    """Truth from the atoms' analytic transforms, f(s) = Σ a_k exp(-(b_k + B) s²/4) per
    atom, summed over the grid's Fourier box |k_i| <= n_i/2 (an even axis' ±n/2 both) at
    the grid points — no Gaussians in real space, no aliasing."""
    from varref.engine.model_map import scattering_coefficients
    from varref.maps import Map

    model = varref.example_helix(2)
    model = dataclasses.replace(model, b_iso=np.full(model.n_atoms, 4.0))  # sharp atoms
    voxel = np.array([0.9, 0.95, 1.0])                          # (x, y, z)
    centre = model.xyz[~model.is_hydrogen].mean(axis=0)
    origin = centre - 0.5 * voxel * np.array(shape[::-1])
    grid = Map(np.zeros(shape, np.float32), origin, voxel, np.full(3, 90.0))
    length = np.array(shape) * voxel[::-1]                      # (z, y, x)
    # per axis: frequencies k/L for |k| <= n/2 and the phase of each at each grid point
    freq = [np.arange(-(n // 2), n // 2 + 1) / L for n, L in zip(shape, length)]
    phase = [np.exp(2j * np.pi * f[:, None] * np.arange(n)[None, :] * (L / n))
             for f, n, L in zip(freq, shape, length)]
    sz, sy, sx = np.meshgrid(*freq, indexing="ij")
    s2 = sx**2 + sy**2 + sz**2
    heavy = ~model.is_hydrogen
    coeff_a, coeff_b = scattering_coefficients(model.element[heavy])
    spectrum = np.zeros(s2.shape, complex)
    for xyz, a, b, bi in zip(model.xyz[heavy] - origin, coeff_a, coeff_b, model.b_iso[heavy]):
        form = sum(ak * np.exp(-(bk + bi) * s2 / 4.0) for ak, bk in zip(a, b))
        spectrum += form * np.exp(-2j * np.pi * (sx * xyz[0] + sy * xyz[1] + sz * xyz[2]))
    truth = np.einsum("abc,ai,bj,ck->ijk", spectrum, *phase, optimize=True).real / np.prod(length)
    computed = band_limited_model_map(model, model.xyz, grid)
    rms = np.sqrt(np.mean(truth**2))
    assert np.sqrt(np.mean((computed - truth) ** 2)) < 1e-3 * rms
    # sampled directly on the grid (no oversampling), the sharp atoms alias visibly
    aliased = band_limited_model_map(model, model.xyz, grid, oversample=1)
    assert np.sqrt(np.mean((aliased - truth) ** 2)) > 1e-2 * rms


def test_model_mask_is_one_at_the_atoms_with_a_cosine_edge(helix):
    from scipy.spatial import cKDTree

    from varref.engine.correlation import atom_mask, mask_radii

    grid = simulate_map(helix, 3.0, voxel_size=0.5, margin=10.0)
    mask = model_mask(helix, helix.xyz, grid, radius=1.0, soft_edge=3.0)
    hard = model_mask(helix, helix.xyz, grid, radius=1.0, soft_edge=0.0)
    np.testing.assert_array_equal(hard, atom_mask(helix.xyz, mask_radii(helix.element) + 1.0,
                                                  grid.data.shape, grid.origin, grid.voxel_size))
    nz, ny, nx = grid.data.shape
    iz, iy, ix = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    points = grid.origin + np.stack([ix, iy, iz], axis=-1).reshape(-1, 3) * grid.voxel_size
    distance = cKDTree(helix.xyz).query(points)[0].reshape(mask.shape)
    assert np.all(mask[hard == 1] == 1.0)
    assert np.all(mask[distance > 1.8 + 1.0 + 3.0 + 0.5] == 0.0)
    edge = (mask > 0) & (mask < 1)
    assert edge.sum() > 1000 and np.all(distance[edge] > 1.45 + 1.0 - 0.01)
    # the cosine: half height 1.5 Å beyond the hard region (nearest atoms all C/N/O here)
    half = np.abs(mask - 0.5) < 0.05
    assert np.median(distance[half]) == pytest.approx(1.6 + 1.0 + 1.5, abs=0.35)


def test_half_maps_relation_2f_over_1_plus_f(long_helix_halves):
    """Rosenthal & Henderson (2003): the full map's FSC is 2F/(1+F) of the half-map FSC F,
    checked against two independent full maps; a perfect model reaches sqrt of it."""
    model, maps = long_helix_halves
    mask = model_mask(model, model.xyz, maps[0])
    half = fsc(maps[0], maps[1], mask=mask)["fsc"]
    full = fsc(average_map(maps[0], maps[1]), average_map(maps[2], maps[3]), mask=mask)["fsc"]
    signal = np.asarray(half) > 0.143
    assert signal.sum() >= 8
    difference = np.abs(np.asarray(full - full_map_fsc(half)))[signal]
    assert difference.max() < 0.05 and difference.mean() < 0.015
    # ... and F itself would be far off (so the test can tell)
    assert np.abs(np.asarray(full - half))[signal].max() > 0.1

    ds = model_map_fsc(model, None, None, 3.0, half_maps=(maps[0], maps[1]))
    np.testing.assert_allclose(ds["fsc_full_estimate"],
                               2 * ds["fsc_half"].clip(0) / (1 + ds["fsc_half"].clip(0)))
    np.testing.assert_allclose(ds["fsc_ref"], np.sqrt(ds["fsc_full_estimate"]))
    signal = np.asarray(ds["fsc_half"]) > 0.143
    assert np.abs(np.asarray(ds["fsc_model"] - ds["fsc_ref"]))[signal].max() < 0.05
    for half_map in ("fsc_model_half1", "fsc_model_half2"):
        expected = np.sqrt(ds["fsc_half"].clip(0))
        assert np.abs(np.asarray(ds[half_map] - expected))[signal].max() < 0.05
    summary = fsc_summary(ds)
    assert summary["resolution"] == 3.0
    assert abs(summary["fsc_average_gap"]) < 0.02   # nothing refined: work ~ free
    assert summary["d_fsc0143_half"] < summary["d_fsc05_model"] + 1.0


def test_summary_without_a_dataset_equals_the_datasets(long_helix_halves):
    """`varref refine` reports model_map_fsc_summary (numpy only); it must equal
    fsc_summary of the Dataset, with and without half maps, key for key."""
    from varref.fsc import model_map_fsc_summary

    model, maps = long_helix_halves
    moved = model.xyz + np.random.default_rng(2).normal(0.0, 0.3, model.xyz.shape)
    for halves, density in (((maps[0], maps[1]), None), (None, maps[2])):
        expected = fsc_summary(model_map_fsc(model, moved, density, 3.0, half_maps=halves))
        found = model_map_fsc_summary(model, moved, density, 3.0, half_maps=halves)
        assert found == expected
        assert found["fsc_average_model"] is not None and found["d_fsc05_model"] is not None


def test_importing_varref_and_its_command_line_leaves_xarray_out():
    """xarray (with pandas, and dask through it) costs ~0.7 s per `varref refine`; only the
    commands that build Datasets import it."""
    import subprocess
    import sys

    code = ("import sys, varref, varref.cli, varref.commands.refine, varref.fsc; "
            "print(sorted(m for m in ('xarray', 'pandas', 'dask', 'zarr') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- half-map input


def test_mismatched_grids_raise_input_error_naming_the_file(tmp_path, helix):
    first = simulate_map(helix, 3.0, snr=2.0, seed=1)
    other = simulate_map(helix, 3.0, snr=2.0, seed=2, grid=first)
    paths = {name: tmp_path / f"{name}.mrc" for name in
             ("h1", "h2", "bigger", "finer", "shifted", "same")}
    write_map(first, paths["h1"])
    write_map(other, paths["h2"])
    write_map(simulate_map(helix, 3.0, snr=2.0, seed=2, margin=8.0), paths["bigger"])
    write_map(dataclasses.replace(other, voxel_size=other.voxel_size * 1.02), paths["finer"])
    write_map(dataclasses.replace(other, origin=other.origin + 0.5), paths["shifted"])
    write_map(first, paths["same"])
    h1, h2 = read_half_maps(paths["h1"], paths["h2"])
    assert h1.source == str(paths["h1"]) and h2.source == str(paths["h2"])
    for name, words in (("bigger", "grid"), ("finer", "voxel size"), ("shifted", "origin"),
                        ("same", "identical")):
        with pytest.raises(InputError, match=words) as caught:
            read_half_maps(paths["h1"], paths[name])
        assert caught.value.source == str(paths[name])
        assert str(paths[name]) in str(caught.value)
    with pytest.raises(InputError) as caught:
        fsc(first, read_map(paths["bigger"]))
    assert caught.value.source == str(paths["bigger"])
    with pytest.raises(InputError) as caught:   # full map on another grid than the halves
        model_map_fsc(helix, None, paths["bigger"], 3.0, half_maps=(paths["h1"], paths["h2"]))
    assert str(paths["h1"]) in str(caught.value) and str(paths["bigger"]) in str(caught.value)
    with pytest.raises(InputError, match="mask"):
        fsc(first, other, mask=np.ones((3, 3, 3)))


def test_average_map_is_the_mean_of_the_halves(helix):
    h1 = simulate_map(helix, 3.0, snr=2.0, seed=1)
    h2 = simulate_map(helix, 3.0, snr=2.0, seed=2, grid=h1)
    mean = average_map(h1, h2)
    np.testing.assert_allclose(mean.data, (h1.data.astype(float) + h2.data) / 2, atol=1e-6)
    np.testing.assert_array_equal(mean.origin, h1.origin)
    noise_free = simulate_map(helix, 3.0, grid=h1)
    # averaging halves the noise variance: the mean is closer to the truth than either half
    assert np.std(mean.data - noise_free.data) < 0.75 * np.std(h1.data - noise_free.data)


# --------------------------------------------------------------------------- cross-validation


def test_cross_validation_shows_over_fitting_of_a_too_high_weight(helix):
    h1 = simulate_map(helix, 3.0, snr=1.0, seed=1)
    h2 = simulate_map(helix, 3.0, snr=1.0, seed=2, grid=h1)
    restraints = varref.build_restraints(helix)
    high = cross_validate(helix, h1, h2, 3.0, restraints=restraints, weight=1000.0, macro_cycles=2)
    auto = cross_validate(helix, h1, h2, 3.0, restraints=restraints, macro_cycles=2)
    h, a = high.summary, auto.summary
    assert h["weight"] == 1000.0 and a["weight"] < 1000.0
    # same start for both: the halves agree to within their statistics before refinement
    assert h["start_fsc_average_work"] == a["start_fsc_average_work"]
    assert abs(h["start_fsc_average_gap"]) < 0.02
    # a too high weight fits half 1's noise: work up, free down, a clear gap
    assert h["fsc_average_work"] > h["start_fsc_average_work"] + 0.02
    assert h["fsc_average_free"] < h["start_fsc_average_free"] - 0.01
    assert h["fsc_average_gap"] > 0.06
    # the automatic weight over-fits less
    assert a["fsc_average_gap"] < h["fsc_average_gap"] - 0.02
    assert a["fsc_average_free"] > h["fsc_average_free"]
    assert auto.result.after["bond_rmsd"] < high.result.after["bond_rmsd"]
    assert set(high.to_dict()) >= {"fsc_average_work", "fsc_average_free", "fsc_average_gap"}


# --------------------------------------------------------------------------- outputs


def test_fsc_is_written_as_netcdf_json_and_png(tmp_path, helix):
    h1 = simulate_map(helix, 3.0, snr=2.0, seed=1)
    h2 = simulate_map(helix, 3.0, snr=2.0, seed=2, grid=h1)
    ds = model_map_fsc(helix, None, None, 3.0, half_maps=(h1, h2))
    write_fsc(ds, tmp_path / "fsc.nc")
    back = xr.open_dataset(tmp_path / "fsc.nc", engine="scipy")
    for name in ("fsc_model", "fsc_model_half1", "fsc_model_half2", "fsc_half", "n_coefficients"):
        np.testing.assert_allclose(back[name], ds[name])
    assert back["resolution"].attrs["units"] == "Å"
    assert back.attrs["fsc_average_model"] == pytest.approx(ds.attrs["fsc_average_model"])
    back.close()

    write_fsc(ds, tmp_path / "fsc.json")
    document = json.loads((tmp_path / "fsc.json").read_text())
    assert document["summary"] == fsc_summary(ds)
    assert len(document["shells"]["fsc_half"]) == ds.sizes["s"]
    assert document["shells"]["n_coefficients"] == ds["n_coefficients"].values.tolist()

    plot_fsc(ds, tmp_path / "fsc.png", title="helix")
    png = (tmp_path / "fsc.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    plot_fsc(fsc(h1, h2), tmp_path / "plain.png")
    with pytest.raises(InputError):
        write_fsc(ds, tmp_path / "fsc.txt")
    assert not (tmp_path / "fsc.txt").exists()


# --------------------------------------------------------------------------- real data


def test_trpv1_model_map_fsc(shared):
    """EMD-5778 crop (3.4 Å) with the deposited 3J5P chain A: FSC = 0.5 at 3.62 Å (masked)."""
    model = read_model(shared("maps/emd5778_trpv1_tm/transmem.pdb.renum.pdb"))
    density = read_map(shared("maps/emd5778_trpv1_tm/transmem.mrc"))
    ds = model_map_fsc(model, None, density, 3.4)
    summary = fsc_summary(ds)
    assert 3.0 < summary["d_fsc05_model"] < 8.0
    assert summary["d_fsc05_model"] == pytest.approx(3.62, abs=0.1)
    assert 0.5 < summary["fsc_average_model"] < 0.8
    # a model moved by 1 Å (a wrong register) fits worse
    shifted = model_map_fsc(model, model.xyz + [1.0, 0.0, 0.0], density, 3.4)
    assert fsc_summary(shifted)["fsc_average_model"] < summary["fsc_average_model"] - 0.05
