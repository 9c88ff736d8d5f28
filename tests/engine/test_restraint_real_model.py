"""Engine restraint terms on a real model (crambin, 1crn) against gemmi's own numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

MODELS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "models"


@pytest.fixture(scope="module")
def crambin():
    path = MODELS / "1crn.pdb"
    if not path.exists():
        pytest.skip("shared model 1crn.pdb not available")
    pytest.importorskip("varref.model")
    from varref.model import read_model
    from varref.restraints import build_restraints

    model = read_model(path)
    return model, build_restraints(model)


@pytest.fixture(scope="module")
def gemmi_topology(crambin):
    import gemmi

    from varref.monlib import load_monomer_library

    model, _ = crambin
    st = model.structure.clone()
    index = 0
    for chain in st[0]:
        for residue in chain:
            for atom in residue:
                atom.tls_group_id = index  # prepare_topology keeps it; serials are renumbered
                index += 1
    monlib = load_monomer_library(st[0].get_all_residue_names())
    gemmi.add_automatic_links(st[0], st, monlib)
    topo = gemmi.prepare_topology(st, monlib, model_index=0,
                                  h_change=gemmi.HydrogenChange.NoChange, reorder=False,
                                  ignore_unknown_links=True)
    # the Topo points into st and monlib: keep them alive as long as the topology
    return _Topology(st, monlib, topo)


class _Topology:
    def __init__(self, structure, monlib, topo):
        self.structure = structure
        self.monlib = monlib
        self.topo = topo

    def __getattr__(self, name):
        return getattr(self.topo, name)


def _rms(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(np.sqrt(np.mean(values**2)))


def test_bond_and_angle_rmsd_agree_with_gemmi(crambin, gemmi_topology):
    from varref.engine.geometry_stats import geometry_statistics

    model, restraints = crambin
    assert not model.is_hydrogen.any()
    stats = geometry_statistics(model.xyz, restraints)
    bonds = [b for b in gemmi_topology.bonds if b.restr.esd > 0]
    angles = [a for a in gemmi_topology.angles if a.restr.esd > 0]
    gemmi_bond_rmsd = _rms([b.calculate() - b.restr.value for b in bonds])
    gemmi_angle_rmsd = _rms([np.degrees(a.calculate()) - a.restr.value for a in angles])
    assert stats["bonds"]["n"] == len(bonds)
    assert stats["angles"]["n"] == len(angles)
    assert stats["bonds"]["rmsd"] == pytest.approx(gemmi_bond_rmsd, rel=1e-9)
    assert stats["angles"]["rmsd"] == pytest.approx(gemmi_angle_rmsd, rel=1e-9)
    # no hydrogens: the heavy-atom figures are all of them
    assert stats["bonds"] == stats["bonds_with_h"]
    assert stats["angles"] == stats["angles_with_h"]
    # a 1.5 A X-ray structure: Engh & Huber-like deviations; the CCP4 library sigmas are
    # tight (0.01 Å for N-CA), so a 1981 model has a few 4-sigma outliers, not many
    assert 0.005 < stats["bonds"]["rmsd"] < 0.03
    assert 0.5 < stats["angles"]["rmsd"] < 3.0
    for kind in ("bonds", "angles"):
        assert stats[kind]["max_deviation"] >= stats[kind]["rmsd"]
        assert 0 <= stats[kind]["n_outliers_4sigma"] < 0.1 * stats[kind]["n"]


def test_a_stretched_bond_is_a_four_sigma_outlier(crambin):
    from varref.engine.geometry_stats import geometry_statistics

    model, restraints = crambin
    before = geometry_statistics(model.xyz, restraints)
    # stretch the first CA-CB bond by 0.3 Å (sigma ~0.02 Å) by moving CB outwards
    bonds = restraints.bonds.atoms
    k = next(k for k, (i, j) in enumerate(bonds)
             if {model.atom_name[i], model.atom_name[j]} == {"CA", "CB"})
    i, j = bonds[k] if model.atom_name[bonds[k][1]] == "CB" else bonds[k][::-1]
    xyz = model.xyz.copy()
    xyz[j] += 0.3 * (xyz[j] - xyz[i]) / np.linalg.norm(xyz[j] - xyz[i])
    after = geometry_statistics(xyz, restraints)
    assert after["bonds"]["n_outliers_4sigma"] > before["bonds"]["n_outliers_4sigma"]
    assert after["bonds"]["max_deviation"] >= 0.25
    assert after["bonds"]["rmsd"] > before["bonds"]["rmsd"]


def test_chiral_volumes_and_torsions_agree_with_gemmi(crambin, gemmi_topology):
    from varref.engine.chirals import chiral_volumes
    from varref.engine.torsions import torsion_values

    model, restraints = crambin
    chirs = list(gemmi_topology.chirs)
    atoms = np.array([[a.tls_group_id for a in c.atoms] for c in chirs], np.int64)
    np.testing.assert_allclose(chiral_volumes(model.xyz, atoms),
                               [c.calculate() for c in chirs], atol=1e-9)
    tors = [t for t in gemmi_topology.torsions if t.restr.esd > 0]
    atoms = np.array([[a.tls_group_id for a in t.atoms] for t in tors], np.int64)
    diff = torsion_values(model.xyz, atoms) - np.degrees([t.calculate() for t in tors])
    np.testing.assert_allclose((diff + 180.0) % 360.0 - 180.0, 0.0, atol=1e-9)
    # every chiral restraint of the builder is satisfied in sign by a deposited model
    packed_ideal = restraints.chirals.ideal
    volumes = chiral_volumes(model.xyz, restraints.chirals.atoms)
    fixed = ~restraints.chirals.both_signs
    assert np.all(np.sign(volumes[fixed]) == np.sign(packed_ideal[fixed]))


def test_real_model_gradient_and_statistics(crambin):
    from varref.engine.geometry_stats import geometry_statistics
    from varref.engine.restraint_target import (
        pack_restraints,
        restraint_terms,
        restraint_value_and_gradient,
    )

    model, restraints = crambin
    packed = pack_restraints(restraints)
    nbl = packed.neighbour_list()
    xyz = model.xyz
    pairs = nbl.update(xyz)
    value, grad = restraint_value_and_gradient(xyz, packed, pairs)
    terms = restraint_terms(xyz, packed, pairs)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    assert value == pytest.approx(sum(terms.values()), rel=1e-12)
    # spot-check a few coordinates by central differences
    rng = np.random.default_rng(0)
    for atom in rng.choice(len(xyz), size=5, replace=False):
        for axis in range(3):
            h = 1e-5
            plus = xyz.copy()
            plus[atom, axis] += h
            minus = xyz.copy()
            minus[atom, axis] -= h
            numeric = (restraint_value_and_gradient(plus, packed, pairs)[0]
                       - restraint_value_and_gradient(minus, packed, pairs)[0]) / (2 * h)
            assert grad[atom, axis] == pytest.approx(numeric, rel=1e-4, abs=1e-4)
    stats = geometry_statistics(xyz, restraints)
    assert stats["planes"]["n"] == len(restraints.planes.atoms)
    assert stats["planes"]["rmsd"] < 0.05
    # the reported residuals are the target's: n * rms_z^2 is each term's value
    for key, term in (("bonds_with_h", "bond"), ("angles_with_h", "angle"),
                      ("torsions", "torsion"), ("chirals", "chiral"), ("planes", "plane")):
        assert stats[key]["n"] * stats[key]["rms_z"] ** 2 == pytest.approx(terms[term],
                                                                          rel=1e-9)
