"""ADP refinement recovers known B on simulated maps and raises CC_mask on real maps."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from varref.example_data import example_helix
from varref.mapfit import correlations
from varref.maps import read_map
from varref.model import read_model
from varref.refinement.adp import B_BOUNDS, GROUP_B_RESOLUTION, adp_mode, hydrogen_parents, refine_adp
from varref.restraints import build_restraints
from varref.simulate import simulate_map


def true_b(model, seed=0):
    """B rising from 20 to 120 Å^2 along the chain, N(0, 8) per residue, and +6 Å^2 per
    side-chain position beyond C-alpha (CB +6, CG +12, ...)."""
    rng = np.random.default_rng(seed)
    n = model.n_residues
    per_residue = 20.0 + 100.0 * np.arange(n) / (n - 1) + rng.normal(0.0, 8.0, n)
    depth = np.array([max(0, "ABGDEZH".find(name[1:2])) if len(name) > 1 else 0
                      for name in model.atom_name])
    depth[np.isin(model.atom_name, ["N", "CA", "C", "O", "OXT"])] = 0
    return np.clip(per_residue[model.residue_index] + 6.0 * depth, 5.0, None)


def cc_mask_with(model, b_iso, density, resolution):
    return correlations(replace(model, b_iso=b_iso), model.xyz, density, resolution,
                        which=("cc_mask",))["cc_mask"]


def residue_means(model, b_iso):
    heavy = ~model.is_hydrogen
    index = model.residue_index[heavy]
    return np.bincount(index, b_iso[heavy]) / np.bincount(index)


@pytest.fixture(scope="module")
def helix():
    model = example_helix(70)
    return model, build_restraints(model), true_b(model)


def test_auto_mode_switches_to_group_b_beyond_4_angstrom():
    assert adp_mode("auto", 3.0) == "atom"
    assert adp_mode("auto", GROUP_B_RESOLUTION) == "atom"
    assert adp_mode("auto", 4.5) == "group"
    assert adp_mode("atom", 8.0) == "atom" and adp_mode("group", 2.0) == "group"
    with pytest.raises(ValueError):
        adp_mode("anisotropic", 3.0)


def test_per_atom_b_recovered_from_a_noisy_3A_map(helix):
    """Start from a constant B = 50; the map (SNR 3) was simulated with the true, varying B."""
    model, restraints, truth = helix
    density = simulate_map(replace(model, b_iso=truth), 3.0, snr=3.0, seed=1)
    start = replace(model, b_iso=np.full(model.n_atoms, 50.0))
    b_iso, report = refine_adp(start, start.xyz, density, 3.0, restraints)
    assert report["mode"] == "atom" and report["kept"]
    assert np.corrcoef(b_iso, truth)[0, 1] >= 0.8
    assert np.all((b_iso >= B_BOUNDS[0]) & (b_iso <= B_BOUNDS[1]))
    before = cc_mask_with(start, start.b_iso, density, 3.0)
    after = cc_mask_with(start, b_iso, density, 3.0)
    assert report["cc_before"] == pytest.approx(before, abs=1e-4)
    assert report["cc_after"] == pytest.approx(after, abs=1e-4)
    assert after > before + 0.01
    # the overall level is right: the mean is within 10 Å^2 of the truth's
    assert abs(b_iso.mean() - truth.mean()) < 10.0


def test_bonded_b_restraint_suppresses_noise(helix):
    """Without the restraint per-atom B fit the noise (poor correlation with the truth)."""
    model, restraints, truth = helix
    density = simulate_map(replace(model, b_iso=truth), 3.0, snr=3.0, seed=1)
    start = replace(model, b_iso=np.full(model.n_atoms, 50.0))
    restrained, report = refine_adp(start, start.xyz, density, 3.0, restraints)
    free, free_report = refine_adp(start, start.xyz, density, 3.0, restraints, restraint_fraction=0.0)
    assert free_report["restraint_weight"] == 0.0 and report["restraint_weight"] > 0.0
    assert np.corrcoef(restrained, truth)[0, 1] > np.corrcoef(free, truth)[0, 1] + 0.1
    # the free fit over-fits: a higher CC with the noisy map than the restrained one
    assert free_report["cc_after"] > report["cc_after"]


def test_group_b_recovered_at_4_5A(helix):
    model, restraints, truth = helix
    density = simulate_map(replace(model, b_iso=truth), 4.5, snr=3.0, seed=2)
    start = replace(model, b_iso=np.full(model.n_atoms, 50.0))
    b_iso, report = refine_adp(start, start.xyz, density, 4.5, restraints)  # auto
    assert report["mode"] == "group" and report["n_parameters"] == model.n_residues
    for r in range(model.n_residues):  # one B per residue
        assert np.ptp(b_iso[model.residue_index == r]) == 0.0
    assert np.corrcoef(residue_means(model, b_iso), residue_means(model, truth))[0, 1] >= 0.8
    assert cc_mask_with(start, b_iso, density, 4.5) > cc_mask_with(start, start.b_iso, density, 4.5)


def test_overall_b_search_finds_a_uniform_truth(helix):
    """A constant input B far from a constant truth: the 1-D search alone lands on it."""
    model, restraints, _ = helix
    density = simulate_map(model, 3.0, b_iso=80.0)
    start = replace(model, b_iso=np.full(model.n_atoms, 20.0))
    b_iso, report = refine_adp(start, start.xyz, density, 3.0, restraints, iterations=1)
    assert report["overall_shift"] == pytest.approx(60.0, abs=1.0)
    assert report["cc_overall"] > 0.9999 > report["cc_before"]


@pytest.mark.parametrize("relative_map, relative_model, resolution", [
    ("maps/emd5778_trpv1_tm/transmem.mrc", "maps/emd5778_trpv1_tm/transmem.pdb.renum.pdb", 3.4),
    ("maps/emd2566_ribosome_chain9/2566_3J6B_9.mrc", "maps/emd2566_ribosome_chain9/3J6B_9.pdb", 3.2),
])
def test_real_map_cc_mask_rises_over_the_deposited_b(shared, relative_map, relative_model,
                                                     resolution):
    model = read_model(shared(relative_model))
    density = read_map(shared(relative_map)).prepared(model.xyz)
    restraints = build_restraints(model)
    b_iso, report = refine_adp(model, model.xyz, density, resolution, restraints)
    assert report["mode"] == "atom"
    before = cc_mask_with(model, model.b_iso, density, resolution)
    after = cc_mask_with(model, b_iso, density, resolution)
    assert after > before + 0.05  # measured: TRPV1 0.716 -> 0.864, 3J6B 0.676 -> 0.815
    # hydrogens (3J6B carries them) ride on their parents' B
    parent = hydrogen_parents(model, restraints)
    riding = np.flatnonzero(parent >= 0)
    np.testing.assert_array_equal(b_iso[riding], b_iso[parent[riding]])
