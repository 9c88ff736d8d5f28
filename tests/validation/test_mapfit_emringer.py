"""Map fit: correlations through the engine, EMRinger on simulated maps."""

from __future__ import annotations

import math

import numpy as np
import pytest
from validation_edits import rotate_side_chains, simulated_map

from varref.validation.mapfit import (EMRINGER_RESIDUES, _rotameric, emringer,
                                      map_model_correlations)
from varref.validation.residues import ResidueTable



@pytest.fixture(scope="module")
def ubiquitin(read_shared_model):
    model = read_shared_model("1ubq")
    return model, simulated_map(model, resolution=3.0)


def test_rotameric_windows_hold_39_of_72_samples():
    angles = np.arange(0.0, 360.0, 5.0)
    assert np.count_nonzero(_rotameric(angles)) == 39
    assert _rotameric(np.array([30.0, 90.0, 150.0, 210.0, 270.0, 330.0])).all()
    assert not _rotameric(np.array([0.0, 120.0, 240.0, 25.0, 95.0])).any()


def test_emringer_is_high_for_rotameric_side_chains_in_their_own_map(ubiquitin):
    model, density = ubiquitin
    result = emringer(ResidueTable(model), density)
    assert result["n_scanned"] == int(np.count_nonzero(
        np.isin(ResidueTable(model).name, EMRINGER_RESIDUES)))
    assert result["score"] > 2.0
    assert result["rotamer_ratio"] > 0.8
    # peaks sit at the model's chi1 (within the 5-degree sampling plus interpolation)
    offsets = [abs((row["peak_angle"] - row["model_chi1"] + 180.0) % 360.0 - 180.0)
               for row in result["residues"]]
    assert np.median(offsets) <= 5.0
    assert result["score"] == pytest.approx(10 * result["z_max"] / math.sqrt(result["n_scanned"]))


def test_emringer_drops_when_side_chains_are_turned_off_rotamer(ubiquitin):
    model, density = ubiquitin
    rotameric = emringer(ResidueTable(model), density)["score"]
    # turn every scanned side chain by 60 degrees: chi1 -60/180/60 become 0/240/120
    turned = rotate_side_chains(model, EMRINGER_RESIDUES, 60.0)
    off = emringer(ResidueTable(turned), simulated_map(turned, resolution=3.0))
    assert off["score"] < rotameric - 2.0
    assert off["score"] < 0.5


def test_cc_mask_is_high_for_the_model_and_drops_when_it_is_shifted(ubiquitin):
    model, density = ubiquitin
    # the model's 58 waters are not in the simulated map, so CC stays below 1
    fit = map_model_correlations(model, density, resolution=3.0)
    assert fit["available"]
    assert fit["cc_mask"] > 0.8
    assert len(fit["per_residue_cc"]) == model.n_residues
    assert set(fit) >= {"cc_mask", "cc_box", "cc_volume", "cc_peaks", "per_chain_cc"}
    shifted = map_model_correlations(model.with_xyz(model.xyz + [1.5, 0.0, 0.0]), density, 3.0)
    assert shifted["cc_mask"] < fit["cc_mask"] - 0.1
