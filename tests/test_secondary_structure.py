"""Secondary structure: DSSP-like assignment vs the files' annotation, base pairs, the term."""

from __future__ import annotations

from types import SimpleNamespace

import gemmi
import numpy as np
import pytest

from tests.conftest import shared_file
from varref.model import Model, read_model
from varref.refinement.terms.secondary_structure import SecondaryStructureTerm, build, enabled
from varref.restraints.secondary_structure import (
    KINDS,
    annotation_from_records,
    assign_dssp,
    backbone,
    find_base_pairs,
    find_secondary_structure,
    hbond_energy,
)

#: Models with HELIX/SHEET annotation (X-ray and a 9 Å cryo-EM model).
ANNOTATED = ["1ubq.pdb", "1crn.pdb", "1crn.cif", "1orc.pdb", "5i55.cif", "1d66.pdb", "6out.pdb",
             "3j6r.pdb"]


def _model(name: str) -> Model:
    return read_model(shared_file(f"models/{name}"))


def _widen(mask: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """``mask`` grown by one residue at each end of every run, within unbroken chain."""
    out = mask.copy()
    same = segment[1:] == segment[:-1]
    out[:-1] |= mask[1:] & same
    out[1:] |= mask[:-1] & same
    return out


def _agreement(model: Model) -> dict[str, tuple[int, int]]:
    """(hits, total) per criterion between the DSSP-like codes and the file records."""
    bb = backbone(model)
    dssp, records = assign_dssp(model), annotation_from_records(model)
    rec_helix, rec_strand = records.codes == "H", records.codes == "E"
    found_helix = np.isin(dssp.codes, ("H", "G", "I"))
    found_strand = dssp.codes == "E"
    alpha_bonds = [(a, d) for a, d, k in records.element_hbonds if k == "alpha"]
    bonds = dssp.hbonds.as_set()

    def frac(a, b):
        return int(np.count_nonzero(a & b)), int(np.count_nonzero(a))

    return {
        "helix_raw": frac(rec_helix, found_helix),
        # HELIX/SHEET records include the H-bonded end residues that DSSP leaves out
        "helix": frac(rec_helix, _widen(found_helix, bb.segment)),
        "strand": frac(rec_strand, _widen(found_strand, bb.segment)),
        "dssp_H_in_records": frac(dssp.codes == "H", np.isin(records.codes, ("H", "G", "I"))),
        "dssp_E_in_records": frac(found_strand, rec_strand),
        "alpha_hbonds": (sum(b in bonds for b in alpha_bonds), len(alpha_bonds)),
    }


# --------------------------------------------------------------------------- detection


def test_hbond_energy_of_an_ideal_geometry():
    """Linear N–H···O=C at N–O 2.9 Å: about −3 kcal/mol, a typical K–S H-bond."""
    n, h, o, c = (np.array([0.0, 0, 0]), np.array([1.0, 0, 0]), np.array([2.9, 0, 0]),
                  np.array([4.13, 0, 0]))
    energy = hbond_energy(o, c, n, h)
    assert -3.5 < energy < -2.5
    # the electrostatic model is long-ranged: linear and 2.6 Å further apart it is gone
    assert hbond_energy(o + [2.6, 0, 0], c + [2.6, 0, 0], n, h) > -0.5
    # a carbonyl pointing its C at the N–H repels
    assert hbond_energy(o, np.array([1.67, 0, 0]), n, h) > 0
    # coincident atoms: DSSP's floor, never NaN
    assert hbond_energy(n, c, n, h) == pytest.approx(-9.9)


@pytest.mark.parametrize("name", ANNOTATED)
def test_dssp_like_assignment_agrees_with_file_records(name):
    """Per model: ≥ 90 % of residues in annotated helices and ≥ 85 % in annotated strands
    are found (up to the one-residue end convention); what DSSP calls H/E lies inside the
    annotation; ≥ 90 % of the annotated α-helix O(i)···N(i+4) pairs are K–S H-bonds."""
    model = _model(name)
    a = _agreement(model)
    ratio = {k: hits / total for k, (hits, total) in a.items() if total}
    assert ratio["helix"] >= 0.90, a
    assert ratio.get("strand", 1.0) >= 0.85, a
    assert ratio["dssp_H_in_records"] >= 0.95, a
    assert ratio.get("dssp_E_in_records", 1.0) >= 0.85, a
    assert ratio["alpha_hbonds"] >= 0.90, a


def test_pooled_agreement_over_all_annotated_models():
    """Over all models: raw residue overlap of annotated α-helices ≥ 80 % (records count the
    end residues), ≥ 97 % with the end convention, strands ≥ 95 %."""
    total = {}
    for name in ANNOTATED:
        for key, (hits, n) in _agreement(_model(name)).items():
            h0, n0 = total.get(key, (0, 0))
            total[key] = (h0 + hits, n0 + n)
    ratio = {k: h / n for k, (h, n) in total.items()}
    assert ratio["helix_raw"] >= 0.80, total
    assert ratio["helix"] >= 0.97, total
    assert ratio["strand"] >= 0.95, total
    assert ratio["alpha_hbonds"] >= 0.97, total


def test_ubiquitin_sheet_topology_from_coordinates():
    """DSSP-derived sheet H-bonds of ubiquitin pair β1 (1–7) with β2 (10–17) and with β5
    (64–72), and β3 (40–45) with β5 — the known mixed sheet."""
    model = _model("1ubq.pdb")
    bb = backbone(model)
    dssp = assign_dssp(model)
    number = model.residue_number[np.unique(model.residue_index, return_index=True)[1]][bb.residue]

    def strand(r):
        for k, (lo, hi) in enumerate(((1, 7), (10, 17), (40, 45), (48, 50), (64, 72)), 1):
            if lo - 1 <= number[r] <= hi + 1:
                return k
        return None

    links = {tuple(sorted((strand(a), strand(d)))) for a, d, k in dssp.element_hbonds
             if k == "sheet"}
    assert {(1, 2), (1, 5), (3, 5)} <= links
    assert None not in {s for link in links for s in link}


def test_records_restraints_are_donor_n_acceptor_o_pairs():
    model = _model("1ubq.pdb")
    ss = find_secondary_structure(model)
    assert ss.source == "records"
    protein = ss.kind != KINDS.index("base_pair")
    assert np.all(model.atom_name[ss.atoms[protein, 0]] == "N")
    assert np.all(model.atom_name[ss.atoms[protein, 1]] == "O")
    step = model.residue_index[ss.atoms[:, 0]] - model.residue_index[ss.atoms[:, 1]]
    assert np.all(step[ss.kind == KINDS.index("alpha")] == 4)
    assert np.all(step[ss.kind == KINDS.index("3_10")] == 3)
    assert np.all(model.residue_name[ss.atoms[:, 0]] != "PRO")  # proline N donates nothing
    counts = ss.counts()
    assert counts["alpha"] == 12 - 4  # helix 23–34: O(i)···N(i+4), i = 23..30
    assert counts["sheet"] > 10
    d = np.linalg.norm(model.xyz[ss.atoms[:, 0]] - model.xyz[ss.atoms[:, 1]], axis=1)
    assert np.all(d <= 3.5) and np.median(d) == pytest.approx(2.95, abs=0.1)


def test_without_records_the_coordinates_are_used():
    model = _model("1ubq.pdb")
    st = model.structure.clone()
    st.helices.clear()
    st.sheets.clear()
    bare = Model.from_structure(st)
    ss = find_secondary_structure(bare)
    assert ss.source == "dssp"
    assert ss.counts()["alpha"] >= 8 and ss.counts()["sheet"] >= 10
    codes = ss.codes[bare.residue_index[np.flatnonzero(bare.atom_name == "CA")]]
    assert "".join(codes[25:32]) == "HHHHHHH"  # residues 26–32 inside the 23–34 helix
    with pytest.raises(ValueError):
        find_secondary_structure(bare, source="stride")


# --------------------------------------------------------------------------- base pairs


_COMPLEMENT = {("G", "C"), ("A", "U"), ("A", "T"), ("G", "U")}


def _letter(name: str) -> str:
    return name[-1]


def test_rna_base_pairs_are_watson_crick_partners_in_stems():
    """6v5b (78-nt RNA, one chain) folds into hairpin stems: every base pair found is
    Watson–Crick (or G·U wobble) and nearly all stack on a neighbouring pair (i±1, j∓1)."""
    model = _model("6v5b_drna.pdb")
    pairs = find_base_pairs(model)
    first = np.unique(model.residue_index, return_index=True)[1]
    names, numbers = model.residue_name[first], model.residue_number[first]
    assert len(pairs) >= 20
    found = set()
    for bp in pairs:
        kind = (_letter(names[bp.purine]), _letter(names[bp.pyrimidine]))
        assert kind in _COMPLEMENT
        assert (bp.kind == "wobble") == (kind == ("G", "U"))
        found.add((int(numbers[bp.purine]), int(numbers[bp.pyrimidine])))
    partner = {}
    for a, b in found:
        partner[a], partner[b] = b, a
    stacked = sum(partner.get(a + 1) == b - 1 or partner.get(a - 1) == b + 1
                  for a, b in found)
    assert stacked / len(found) >= 0.9
    assert len(partner) == 2 * len(found)  # each base pairs once


def test_dna_duplex_pairs_follow_the_register():
    """1d66: strands D 1–19 and E 20–38 form a duplex with i + j = 39."""
    model = _model("1d66.pdb")
    pairs = find_base_pairs(model)
    first = np.unique(model.residue_index, return_index=True)[1]
    numbers, chains = model.residue_number[first], model.chain_id[first]
    assert len(pairs) >= 13
    for bp in pairs:
        assert {chains[bp.purine], chains[bp.pyrimidine]} == {"D", "E"}
        assert numbers[bp.purine] + numbers[bp.pyrimidine] == 39
    ss = find_secondary_structure(model)
    bp_rows = ss.kind == KINDS.index("base_pair")
    assert bp_rows.sum() == sum(len(bp.atoms) for bp in pairs)
    assert np.all(np.isin(model.element[ss.atoms[bp_rows]], ("N", "O")))


# --------------------------------------------------------------------------- term


def _setup(model, resolution, option="absent"):
    options = SimpleNamespace(resolution=resolution)
    if option != "absent":
        options.secondary_structure = option
    return SimpleNamespace(model=model, options=options, start=model.xyz[None])


def test_switch_follows_option_then_resolution():
    assert enabled(None, 4.0) and enabled(None, 6.5)
    assert not enabled(None, 3.9) and not enabled(None, 2.0)
    assert enabled(True, 2.0) and not enabled(False, 8.0)
    model = _model("1crn.pdb")
    assert build(_setup(model, 3.0)) is None  # attribute absent → automatic
    assert build(_setup(model, 3.0, None)) is None
    assert build(_setup(model, 3.0, False)) is None
    assert build(_setup(model, 4.5, False)) is None
    term = build(_setup(model, 4.5, None))
    assert isinstance(term, SecondaryStructureTerm) and len(term) > 0
    assert isinstance(build(_setup(model, 2.0, True)), SecondaryStructureTerm)
    assert term.name == "secondary_structure" and term.kind == "restraint"


def test_term_gradient_batch_and_subset():
    model = _model("1ubq.pdb")
    term = build(_setup(model, 4.0))
    rng = np.random.default_rng(7)
    xyz = model.xyz[None] + rng.normal(scale=0.3, size=(2, model.n_atoms, 3))
    values, grad = term.evaluate(xyz, np.array([0, 1]))
    assert values.shape == (2,) and grad.shape == xyz.shape
    # central differences on the atoms of a few restraints
    h = 1e-6
    for atom in np.unique(term.atoms[:5]):
        for c in range(3):
            plus, minus = xyz.copy(), xyz.copy()
            plus[:, atom, c] += h
            minus[:, atom, c] -= h
            numeric = (term.evaluate(plus, np.arange(2))[0]
                       - term.evaluate(minus, np.arange(2))[0]) / (2 * h)
            np.testing.assert_allclose(grad[:, atom, c], numeric, rtol=1e-4,
                                       atol=1e-4 * np.abs(grad).max())
    # a subset keeps exactly the restraints inside it, renumbered
    atoms = np.flatnonzero((model.residue_number >= 20) & (model.residue_number <= 40))
    sub = term.subset(atoms)
    inside = np.all(np.isin(term.atoms, atoms), axis=1)
    assert len(sub) == inside.sum() > 0
    full_inside = SecondaryStructureTerm(term.atoms[inside], term.ideal[inside], 0.05, 0.6,
                                         model.n_atoms, slack=term.slack[inside])
    v_sub, g_sub = sub.evaluate(xyz[:, atoms], np.arange(2))
    v_ref, g_ref = full_inside.evaluate(xyz, np.arange(2))
    np.testing.assert_allclose(v_sub, v_ref, rtol=1e-12)
    np.testing.assert_allclose(g_sub, g_ref[:, atoms], rtol=1e-12, atol=1e-12)
    assert term.subset(np.array([0, 1, 2])) is None
    with pytest.raises(ValueError):
        term.evaluate(xyz[:, :10], np.arange(2))


def _helix_peptide() -> Model:
    """Ubiquitin residues 22–35 (the α-helix 23–34) as a model of its own."""
    st = gemmi.read_structure(str(shared_file("models/1ubq.pdb")))
    st.remove_waters()
    for chain in st[0]:
        for k in range(len(chain) - 1, -1, -1):
            if not 22 <= chain[k].seqid.num <= 35:
                del chain[k]
    st.setup_entities()
    return Model.from_structure(st, source="1ubq helix")


def _rotate_psi(model: Model, xyz: np.ndarray, angle: float) -> np.ndarray:
    """Add ``angle`` (degrees) to every ψ: rotate O(k) and all later residues about CA–C."""
    bb = backbone(model)
    out = xyz.copy()
    theta = np.radians(angle)
    for k in range(len(bb)):
        ca, c = out[bb.ca[k]], out[bb.c[k]]
        u = (c - ca) / np.linalg.norm(c - ca)
        cross = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
        rot = np.eye(3) + np.sin(theta) * cross + (1 - np.cos(theta)) * cross @ cross
        moving = model.residue_index > bb.residue[k]
        moving[bb.o[k]] = True
        out[moving] = (out[moving] - c) @ rot.T + c
    return out


def test_stretched_helix_is_pulled_back():
    """Unwinding ψ stretches the helix's O(i)···N(i+4) bonds by 0.5 Å on average while
    bonds and angles stay ideal, so geometry alone has no reason to rewind it; geometry plus
    this term restores the H-bond distances to within its flat bottom, 2.9 ± 0.15 Å."""
    from varref.engine.restraint_target import pack_restraints, restraint_values_and_gradients_batch
    from varref.refinement.lbfgs import minimise_lbfgs
    from varref.restraints import build_restraints

    model = _helix_peptide()
    ss = find_secondary_structure(model)
    assert ss.source == "records" and ss.counts()["alpha"] == 8
    term = SecondaryStructureTerm.from_secondary_structure(ss, model.n_atoms)
    packed = pack_restraints(build_restraints(model))

    def no_distance(xyz):
        return np.linalg.norm(xyz[ss.atoms[:, 0]] - xyz[ss.atoms[:, 1]], axis=1)

    d0 = no_distance(model.xyz)
    lo, hi = 0.0, 30.0  # bisect the ψ change that stretches the H-bonds by 0.5 Å on average
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = ((mid, hi) if np.mean(no_distance(_rotate_psi(model, model.xyz, mid)) - d0)
                  < 0.5 else (lo, mid))
    start = _rotate_psi(model, model.xyz, 0.5 * (lo + hi))
    assert np.mean(no_distance(start) - d0) == pytest.approx(0.5, abs=1e-3)

    def minimise(terms):
        neighbours = packed.batch_neighbour_list()

        def objective(x, members):
            xyz = x.reshape(len(x), -1, 3)
            value, grad = restraint_values_and_gradients_batch(xyz, packed,
                                                               neighbours.update(xyz))
            for t in terms:
                v, g = t.evaluate(xyz, members)
                value, grad = value + v, grad + g
            return value, grad.reshape(len(x), -1)

        result = minimise_lbfgs(objective, start.reshape(1, -1), max_iterations=300,
                                max_step=0.2)
        return result.x.reshape(-1, 3)

    geometry_only = no_distance(minimise([]))
    with_ss = no_distance(minimise([term]))
    assert np.mean(geometry_only - d0) > 0.4  # control: nothing rewinds the helix
    # back to the edge of the flat bottom, 2.9 ± SLACK Å (it was 0.5 Å beyond 2.9)
    from varref.restraints.secondary_structure import SLACK
    assert np.all(np.abs(with_ss - 2.9) < SLACK + 0.02)
    assert abs(np.mean(with_ss) - 2.9) < SLACK
