"""Restraints from the monomer library on real models: counts, indices, links, deviations."""

from __future__ import annotations

import os
import shutil

import gemmi
import numpy as np
import pytest

from varref.engine.angles import angle_values
from varref.engine.bonds import bond_lengths
from varref.errors import InputError
from varref.model import read_model
from varref.monlib import find_monomer_library, packaged_monomer_library
from varref.restraints import build_restraints

REAL_MODELS = [
    "models/1crn.pdb",
    "models/1d66.pdb",
    "maps/emd2566_ribosome_chain9/3J6B_9.pdb",
    "maps/emd5778_trpv1_tm/transmem.pdb.renum.pdb",
]


@pytest.fixture(scope="module")
def built(request):
    from tests.conftest import shared_file

    cache = {}

    def get(relative):
        if relative not in cache:
            model = read_model(shared_file(relative))
            cache[relative] = (model, build_restraints(model))
        return cache[relative]

    return get


@pytest.mark.parametrize("relative", REAL_MODELS)
def test_counts_are_plausible(built, relative):
    model, restraints = built(relative)
    heavy_polymer_atoms = np.count_nonzero(~model.is_hydrogen & ~model.is_water)
    counts = restraints.counts()
    # a covalent network of N atoms has about N bonds and 1.4-1.8 N angles
    assert 0.9 * heavy_polymer_atoms < counts["bonds"] <= 1.15 * model.n_atoms
    assert 1.3 * counts["bonds"] < counts["angles"] < 2.0 * counts["bonds"]
    assert counts["torsions"] > 0.2 * counts["bonds"]
    assert counts["planes"] > 0 and counts["chirals"] > 0
    assert counts["nonbonded_14_pairs"] > counts["bonds"] * 0.8
    n = model.n_atoms
    for group in (restraints.bonds, restraints.angles, restraints.torsions, restraints.chirals):
        assert group.atoms.min() >= 0 and group.atoms.max() < n
        assert np.all(group.sigma > 0)
    assert restraints.nonbonded.vdw_radius.shape == (n,)
    assert np.all((restraints.nonbonded.vdw_radius > 0.5) & (restraints.nonbonded.vdw_radius < 3.0))


@pytest.mark.parametrize("relative", REAL_MODELS)
def test_deposited_geometry_is_within_a_few_sigma(built, relative):
    """>95 % of heavy-atom bonds and angles within 5 sigma of the library's ideal values."""
    model, restraints = built(relative)
    bonds, angles = restraints.bonds, restraints.angles
    heavy_bonds = ~model.is_hydrogen[bonds.atoms].any(axis=1)
    heavy_angles = ~model.is_hydrogen[angles.atoms].any(axis=1)
    z_bond = (bond_lengths(model.xyz, bonds.atoms) - bonds.ideal) / bonds.sigma
    z_angle = (angle_values(model.xyz, angles.atoms) - angles.ideal) / angles.sigma
    assert np.mean(np.abs(z_bond[heavy_bonds]) < 5) > 0.95
    assert np.mean(np.abs(z_angle[heavy_angles]) < 5) > 0.95


def test_atom_indices_match_gemmi_topology(shared):
    """Every bond's length from our indices equals gemmi's own value for the same restraint."""
    model = read_model(shared("models/1d66.pdb"))
    restraints = build_restraints(model)
    from varref.monlib import load_monomer_library

    st = model.structure.clone()
    monlib = load_monomer_library(st[0].get_all_residue_names())
    gemmi.add_automatic_links(st[0], st, monlib)
    topo = gemmi.prepare_topology(st, monlib, h_change=gemmi.HydrogenChange.NoChange,
                                  ignore_unknown_links=True)
    reference = np.sort([b.calculate() for b in topo.bonds])
    ours = np.sort(bond_lengths(model.xyz, restraints.bonds.atoms))
    np.testing.assert_allclose(ours, reference, atol=1e-9)
    # chiral volumes: our convention (a-c).((b-c)x(d-c)) equals gemmi's calculate()
    c, a, b, d = (model.xyz[restraints.chirals.atoms[:, k]] for k in range(4))
    volumes = np.einsum("ij,ij->i", a - c, np.cross(b - c, d - c))
    np.testing.assert_allclose(np.sort(volumes), np.sort([ch.calculate() for ch in topo.chirs]), atol=1e-9)
    # the ideal signs agree with the model's for nearly all (deposited L-amino acids, D-sugars)
    agree = np.sign(volumes) == np.sign(restraints.chirals.ideal)
    assert np.mean(agree | restraints.chirals.both_signs) > 0.98


def _bonded(model, restraints, first, second):
    """Bonds between atoms matching (residue name, atom name) selectors."""
    i, j = restraints.bonds.atoms.T
    names = np.char.add(np.char.add(model.residue_name, ":"), model.atom_name)
    return np.count_nonzero(((names[i] == first) & (names[j] == second))
                            | ((names[i] == second) & (names[j] == first)))


def test_links_disulfides_peptides_termini(shared):
    model = read_model(shared("models/1crn.pdb"))
    restraints = build_restraints(model)
    assert _bonded(model, restraints, "CYS:SG", "CYS:SG") == 3  # crambin's three disulfides
    peptide = restraints.bonds.atoms[
        (model.atom_name[restraints.bonds.atoms[:, 0]] == "C")
        & (model.atom_name[restraints.bonds.atoms[:, 1]] == "N")
        & (model.residue_index[restraints.bonds.atoms[:, 0]]
           != model.residue_index[restraints.bonds.atoms[:, 1]])
    ]
    assert len(peptide) == model.n_residues - 1  # 46 residues, one chain
    # proline peptide links (PTRANS) keep the N-CD bond and the C-N link
    assert _bonded(model, restraints, "PRO:N", "PRO:CD") == int(np.sum(
        (model.residue_name == "PRO") & (model.atom_name == "CD")))
    oxt = np.flatnonzero(model.atom_name == "OXT")
    if len(oxt):  # C-terminal modification adds the OXT bond
        assert np.any(restraints.bonds.atoms == oxt[0])


def test_nucleic_acid_backbone_links(shared):
    model = read_model(shared("models/1d66.pdb"))
    restraints = build_restraints(model)
    dna = np.isin(model.residue_name, ["DA", "DC", "DG", "DT"])
    n_dna_chains = len(set(model.chain_id[dna]))
    n_nucleotides = len(set(model.residue_index[dna]))
    links = _bonded(model, restraints, "DA:O3'", "DC:P") + sum(
        _bonded(model, restraints, f"{a}:O3'", f"{b}:P")
        for a in ("DA", "DC", "DG", "DT") for b in ("DA", "DC", "DG", "DT")
        if not (a == "DA" and b == "DC"))
    assert links == n_nucleotides - n_dna_chains


def _omega_restraints(model, restraints):
    t = restraints.torsions
    names = model.atom_name[t.atoms]
    omega = (names[:, 0] == "CA") & (names[:, 1] == "C") & (names[:, 2] == "N") & (names[:, 3] == "CA")
    return t.atoms[omega], t.ideal[omega]


def _rotate_about_axis(points, origin, axis, angle):
    axis = axis / np.linalg.norm(axis)
    p = points - origin
    cos, sin = np.cos(angle), np.sin(angle)
    return origin + p * cos + np.cross(axis, p) * sin + np.outer(p @ axis, axis) * (1 - cos)


def test_trans_and_cis_peptides_get_their_omega(shared):
    """Flipping one peptide to cis (omega 0) must switch its link to CIS, ideal omega 0."""
    model = read_model(shared("models/1yjp.pdb"))
    atoms, ideal = _omega_restraints(model, build_restraints(model))
    assert len(atoms) == model.n_residues - 1 - np.count_nonzero(
        model.is_water[np.unique(model.residue_index, return_index=True)[1]])
    assert np.allclose(np.abs(ideal), 180.0)
    # rotate everything after the C(3)-N(4) bond by 180 degrees about it
    carbon = np.flatnonzero((model.residue_number == 3) & (model.atom_name == "C"))[0]
    nitrogen = np.flatnonzero((model.residue_number == 4) & (model.atom_name == "N"))[0]
    moving = (model.residue_number >= 4) & ~model.is_water
    xyz = model.xyz.copy()
    xyz[moving] = _rotate_about_axis(xyz[moving], xyz[carbon], xyz[nitrogen] - xyz[carbon], np.pi)
    flipped = model.with_xyz(xyz)
    flipped = type(model).from_structure(flipped.to_structure(), source="flipped")
    atoms, ideal = _omega_restraints(flipped, build_restraints(flipped))
    is_cis = atoms[:, 1] == carbon
    assert is_cis.sum() == 1
    assert ideal[is_cis][0] == pytest.approx(0.0, abs=1e-6)
    assert np.allclose(np.abs(ideal[~is_cis]), 180.0)


def test_monomer_library_search_order(tmp_path, monkeypatch):
    packaged = packaged_monomer_library()
    assert packaged is not None and (packaged / "a" / "ALA.cif").is_file()
    monkeypatch.delenv("CLIBD_MON", raising=False)
    assert find_monomer_library() == packaged
    fake = tmp_path / "mon"
    (fake / "list").mkdir(parents=True)
    shutil.copy(packaged / "list" / "mon_lib_list.cif", fake / "list")
    monkeypatch.setenv("CLIBD_MON", str(fake))
    assert find_monomer_library() == fake
    assert find_monomer_library(packaged) == packaged  # explicit beats the environment
    monkeypatch.setenv("CLIBD_MON", str(tmp_path / "nowhere"))
    with pytest.raises(InputError, match="CLIBD_MON"):
        find_monomer_library()


def _rename_residue(source, destination, old, new):
    lines = []
    for line in open(source):
        if line.startswith(("ATOM", "HETATM")) and line[17:20] == old and line[22:26].strip() == "6":
            line = line[:17] + new + line[20:]
        lines.append(line)
    destination.write_text("".join(lines))


def test_unknown_residue_is_named_and_extra_dictionary_fixes_it(shared, tmp_path):
    # residue 6 of crambin is SER; call it SRX, a name no library has
    bad = tmp_path / "unknown.pdb"
    _rename_residue(shared("models/1crn.pdb"), bad, "SER", "SRX")
    with pytest.raises(InputError) as error:
        build_restraints(read_model(bad))
    message = str(error.value)
    assert "SRX" in message and "chain A" in message and "residue 6" in message
    assert "--restraints" in message and "--monlib" in message
    # a dictionary for SRX (the SER one, renamed) makes it work
    ser = (packaged_monomer_library() / "s" / "SER.cif").read_text()
    dictionary = tmp_path / "SRX.cif"
    dictionary.write_text(ser.replace("SER", "SRX"))
    restraints = build_restraints(read_model(bad), extra_cifs=[dictionary])
    reference = build_restraints(read_model(shared("models/1crn.pdb")))
    assert len(restraints.angles) >= len(reference.angles) - 10  # SRX is not linked as a peptide
    assert len(restraints.bonds) > 300


def test_hydrogen_bonds_use_nuclear_distances_by_default(shared):
    model = read_model(shared("maps/emd2566_ribosome_chain9/3J6B_9.pdb"))
    assert model.is_hydrogen.any()
    nucleus = build_restraints(model)
    xray = build_restraints(model, hydrogen_distances="xray")
    to_h = model.is_hydrogen[nucleus.bonds.atoms].any(axis=1)
    assert np.all(nucleus.bonds.ideal[to_h] > xray.bonds.ideal[to_h])
    np.testing.assert_array_equal(nucleus.bonds.ideal[~to_h], xray.bonds.ideal[~to_h])


def test_exclusions_and_14_pairs_are_consistent(shared):
    model = read_model(shared("models/1crn.pdb"))
    nonbonded = build_restraints(model).nonbonded
    excluded = {tuple(p) for p in nonbonded.excluded_pairs.tolist()}
    fourth = {tuple(p) for p in nonbonded.pairs_14.tolist()}
    assert not excluded & fourth
    assert all(i < j for i, j in excluded | fourth)
    # every 1-4 pair is 2.4-4.2 Å apart in a real structure; 1-2/1-3 pairs closer than 2.7 Å
    d14 = np.linalg.norm(model.xyz[[p[0] for p in fourth]] - model.xyz[[p[1] for p in fourth]], axis=1)
    d13 = np.linalg.norm(model.xyz[[p[0] for p in excluded]] - model.xyz[[p[1] for p in excluded]], axis=1)
    assert d14.min() > 2.3 and d14.max() < 4.7
    assert d13.max() < 3.2  # 1-3 across a disulfide (CB-SG-SG) is the longest


def _walked_neighbour_pairs(n_atoms, bond_atoms):
    """1-2/1-3 and 1-4 pairs by walking the bond graph atom by atom (the definition)."""
    neighbours = [[] for _ in range(n_atoms)]
    for i, j in bond_atoms.tolist():
        neighbours[i].append(j)
        neighbours[j].append(i)
    close = {(min(i, j), max(i, j)) for i, j in bond_atoms.tolist()}
    for around in neighbours:
        close |= {(min(i, j), max(i, j)) for a, i in enumerate(around) for j in around[a + 1:]}
    fourth = {(min(i, m), max(i, m)) for j, k in bond_atoms.tolist() for i in neighbours[j]
              if i != k for m in neighbours[k] if m not in (j, i)} - close
    return sorted(close), sorted(fourth)


@pytest.mark.parametrize("relative", ["models/1crn.pdb", "maps/emd5778_trpv1_tm/transmem.pdb.renum.pdb"])
def test_exclusions_and_14_pairs_equal_a_walk_of_the_bond_graph(shared, relative):
    """The matrix-product 1-3/1-4 pairs equal a walk of the bond graph, pair for pair and in
    order, on a model with riding hydrogens (rings, disulfides, many branches)."""
    from varref.validation.clashes import add_riding_hydrogens

    model = add_riding_hydrogens(read_model(shared(relative)))
    restraints = build_restraints(model)
    close, fourth = _walked_neighbour_pairs(model.n_atoms, restraints.bonds.atoms)
    assert restraints.nonbonded.excluded_pairs.tolist() == [list(p) for p in close]
    assert restraints.nonbonded.pairs_14.tolist() == [list(p) for p in fourth]
    assert len(fourth) > model.n_atoms  # the case is not trivial


def test_clibd_mon_env_is_honoured(monkeypatch, shared):
    monkeypatch.setenv("CLIBD_MON", str(packaged_monomer_library()))
    model = read_model(shared("models/1crn.pdb"))
    assert len(build_restraints(model).bonds) == 337
    assert os.environ["CLIBD_MON"]


def test_ter_in_the_middle_of_a_chain_does_not_break_links(shared):
    """1J6Z as processed by TEMPy has a TER after residue 72 (residue 73 removed); gemmi reads
    what follows as non-polymer. Those residues must still be linked as a polypeptide."""
    model = read_model(shared("maps/emd5168_factin/1J6Z.pdb"))
    restraints = build_restraints(model)
    i, j = restraints.bonds.atoms.T
    peptide = ((model.atom_name[i] == "C") & (model.atom_name[j] == "N")
               & (model.residue_index[i] != model.residue_index[j]))
    assert model.n_residues == 368
    assert peptide.sum() >= 360  # one link per residue pair except at real gaps


def test_an_atom_outside_the_dictionary_is_named_and_tied(shared, caplog):
    """3MFP (F-actin) has a methylated His named HIS with an extra CZ: a warning names the
    residue and the atom, and CZ is tied to NE2 instead of drifting free."""
    import logging

    from varref.model import read_model
    from varref.restraints import build_restraints

    model = read_model(shared("maps/emd5168_factin/3MFP.pdb"))
    with caplog.at_level(logging.WARNING, logger="varref"):
        restraints = build_restraints(model)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("A/HIS 73" in m and "CZ" in m for m in warnings), warnings
    cz = int(np.flatnonzero((model.residue_number == 73) & (model.atom_name == "CZ"))[0])
    ne2 = int(np.flatnonzero((model.residue_number == 73) & (model.atom_name == "NE2"))[0])
    assert sorted((cz, ne2)) in restraints.bonds.atoms.tolist()
