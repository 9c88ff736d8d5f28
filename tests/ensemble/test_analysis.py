"""Series analysis (varref.ensemble.analysis, `varref analyse`) on a known hinge motion."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from tests.ensemble.hinge_store import HINGE_INDEX, N_FRAMES, REFERENCE, hinge_store
from varref.cli import main
from varref.ensemble.analysis import analyse, domain_segments, hinge_residues, rigid_domains
from varref.errors import InputError


@pytest.fixture(scope="module")
def hinge():
    store, model, frames = hinge_store()
    return store.dataset(), model, frames


def test_pca_finds_the_hinge_motion(hinge):
    dataset, _, _ = hinge
    result = analyse(dataset)
    assert result.attrs["reference_frame"] == REFERENCE and result.attrs["superposed_on"] == "ca"
    ratio = result["explained_variance_ratio"].values
    assert ratio[0] > 0.9 and np.all(np.diff(ratio) <= 1e-12)
    assert abs(float(result["frame_order_correlation"].sel(component="all", pc=1))) > 0.95
    # the projection on PC1 grows frame by frame (sign fixed by frame order)
    assert np.all(np.diff(result["projection"].sel(pc=1).values) > 0)
    mode = result["residue_mode_displacement"].sel(pc=1).values
    assert mode.shape == (40,) and np.all(mode > 0.1)
    # every variable has units and a description
    for name in (*result.data_vars, *result.coords):
        assert {"units", "description"} <= set(result[name].attrs), name
    displacement = result["residue_displacement"].values
    assert np.all(displacement[REFERENCE] < 1e-9) and displacement.shape == (N_FRAMES, 40)


def test_domains_and_hinge_recovered(hinge):
    dataset, _, _ = hinge
    result = analyse(dataset)
    domain = result["domain"].values
    assert result.attrs["n_domains"] == 2
    # residues well away from the hinge are in the right domain
    assert set(domain[:HINGE_INDEX - 2]) == {0} and set(domain[HINGE_INDEX + 3:]) == {1}
    hinge_index = np.flatnonzero(result["hinge"].values)
    assert len(hinge_index) >= 2 and np.all(np.abs(hinge_index - (HINGE_INDEX + 0.5)) <= 2.5)
    assert result.attrs["hinge_residues"] == [f"A/{i + 1}" for i in hinge_index]
    segments = domain_segments(result)
    assert segments[0][0].startswith("A/1-") and segments[1][0].endswith("-40")


def test_all_members_and_components(hinge):
    store, _, _ = hinge_store(components=["a"] * 6 + ["b"] * 5, members=2)
    result = analyse(store.dataset(), members="all", superpose_on="heavy")
    assert result.attrs["n_samples"] == 22 and result.attrs["superposed_on"] == "heavy"
    assert result["member_projection"].dims == ("frame", "member", "pc")
    assert result["component"].values.tolist() == ["a", "b"]
    assert np.all(np.abs(result["frame_order_correlation"].sel(pc=1).values) > 0.95)
    assert result["frame_component"].values.tolist() == ["a"] * 6 + ["b"] * 5


def test_local_rotations_and_domains_small_cases():
    from scipy.spatial.transform import Rotation

    from varref.ensemble.analysis import local_rotations

    rng = np.random.default_rng(3)
    reference = rng.normal(0.0, 3.0, (12, 3))
    residue = np.repeat(np.arange(4), 3)
    turned = reference.copy()
    turned[6:] = reference[6:] @ Rotation.from_rotvec([0.0, 0.0, np.radians(10.0)]).as_matrix().T
    rotations = local_rotations(reference, np.stack([reference, turned]), residue,
                                np.ones(12), np.array(list("AABB")), window=0)
    np.testing.assert_allclose(rotations[0], 0.0, atol=1e-6)
    np.testing.assert_allclose(rotations[1, 2:], [[0.0, 0.0, 10.0]] * 2, atol=1e-6)
    np.testing.assert_allclose(rotations[1, :2], 0.0, atol=1e-6)
    assert rigid_domains(rotations, 5.0, 2).tolist() == [0, 0, 1, 1]
    assert rigid_domains(rotations, 5.0, 3).tolist() == [-1] * 4  # clusters too small
    chain = np.array(list("AAABBB"))
    assert hinge_residues(np.array([0, 0, 1, 1, 1, 1]), chain).tolist() == [False, True, True, False, False, False]
    assert not hinge_residues(np.array([0, 0, 0, 1, 1, 1]), chain).any()  # a chain break is no hinge


def test_bad_requests_are_input_errors(hinge):
    dataset, _, _ = hinge
    with pytest.raises(InputError, match="--reference-frame"):
        analyse(dataset, reference_frame=99)
    with pytest.raises(InputError, match="--members"):
        analyse(dataset, members="some")
    unfinished = dataset.copy()
    unfinished["finished"] = unfinished["finished"] & (unfinished["frame"] == 0)
    with pytest.raises(InputError, match="at least 2"):
        analyse(unfinished)


def test_cli_writes_store_and_labelled_plots(tmp_path, capsys):
    path = tmp_path / "series.zarr"
    hinge_store(path)
    output = tmp_path / "motion.zarr"
    args = ["analyse", str(path), "-o", str(output), "--plots", str(tmp_path / "plots/")]
    (tmp_path / "plots").mkdir()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "PC1" in out and "hinge" in out and "domain 1" in out
    stored = xr.open_zarr(output)
    assert stored["explained_variance_ratio"].attrs["units"] == "1"
    assert float(stored["explained_variance_ratio"][0]) > 0.9
    for name in ("pca", "modes", "domains"):
        assert (tmp_path / "plots" / f"{name}.png").stat().st_size > 5000
    assert main(args) == 2  # exists: --overwrite needed
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0


def test_docstring_examples_of_the_new_modules():
    import doctest

    import varref.ensemble.analysis as analysis
    import varref.ensemble.chimerax as chimerax
    import varref.ensemble.series_inputs as series_inputs

    for module in (analysis, chimerax, series_inputs):
        failures, attempted = doctest.testmod(module, extraglobs={"np": np})
        assert failures == 0 and attempted >= 3, module.__name__


def test_member_spread_flags_motion_the_data_do_not_support():
    """Several members per frame: a frame next to the reference (little motion) whose
    members scatter by 3 Å is flagged on most residues — its members' scatter must not pass
    for motion; frames with tight members (0.02 Å) are flagged almost nowhere."""
    from tests.ensemble.hinge_store import hinge_frames
    from varref.ensemble.results import ResultStore
    from varref.example_data import example_helix

    model = example_helix(40)
    frames = hinge_frames(model)
    store = ResultStore.create(None, model, len(frames), 3,
                               [f"frame_{k:03d}.mrc" for k in range(len(frames))],
                               {"kind": "series", "reference_frame": REFERENCE, "mode": "independent"})
    noisy = REFERENCE + 1
    for frame, xyz in enumerate(frames):
        for member in range(3):
            sigma = 3.0 if frame == noisy else 0.02
            jitter = np.random.default_rng([frame, member, 5]).normal(0.0, sigma, xyz.shape)
            store.write_member(frame, member, xyz + jitter, xyz,
                               {"cc_mask": 0.9 - 0.01 * member, "runtime_s": 1.0})
    result = analyse(store.dataset())
    spread = result["residue_spread"]
    assert spread.dims == ("frame", "residue") and spread.attrs["units"] == "Å"
    assert float(spread.sel(frame=noisy).min()) > 1.0
    assert float(spread.drop_sel(frame=noisy).max()) < 0.1
    flagged = result["spread_exceeds_motion"].values
    assert flagged[noisy].mean() > 0.5
    assert np.delete(flagged, noisy, axis=0).mean() < 0.1
    assert noisy in result.attrs["frames_spread_exceeds_motion"]
    # one member per frame: no spread variables
    single, _, _ = hinge_store()
    assert "residue_spread" not in analyse(single.dataset()).data_vars
