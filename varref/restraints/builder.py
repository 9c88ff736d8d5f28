"""Monomer library → flat restraint arrays, through ``gemmi.prepare_topology``.

gemmi applies the library's links (peptide TRANS/CIS/PTRANS/PCIS chosen from the model's
geometry, nucleic-acid backbone, disulfides from SSBOND/LINK records or found by distance)
and modifications (N/C termini, 5'/3' ends); we read the resulting bonds, angles, torsions,
chiralities and planes and translate gemmi's atom references into atom indices of the
:class:`~varref.model.Model`.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from os import PathLike

import gemmi
import numpy as np

from varref.errors import InputError
from varref.model import Model
from varref.monlib import load_monomer_library
from varref.restraints.arrays import (
    HBOND_CODES,
    AngleRestraints,
    BondRestraints,
    ChiralRestraints,
    NonbondedParameters,
    PlaneRestraints,
    Restraints,
    TorsionRestraints,
)
from varref.restraints.graph import bonded_neighbour_pairs, hydrogen_parents

log = logging.getLogger(__name__)

#: Chiral-volume sigma (Å³); the library gives none. Refmac and Phenix use 0.2.
CHIRAL_SIGMA = 0.2


def build_restraints(
    model: Model,
    monlib_dir: str | PathLike | None = None,
    extra_cifs: Sequence[str | PathLike] = (),
    automatic_links: bool = True,
    hydrogen_distances: str = "nucleus",
    united_atom_radii: bool = False,
) -> Restraints:
    """Build every geometry restraint of ``model`` from the CCP4 monomer library.

    Parameters
    ----------
    model
        The model; atom indices in the result are rows of ``model.xyz``.
    monlib_dir
        Monomer-library directory (default: ``$CLIBD_MON``, then coot-headless-api's copy).
    extra_cifs
        Additional restraint dictionaries (ligands, modified residues).
    automatic_links
        Also link atoms closer than the library's link distances when the file has no
        LINK/SSBOND record for them (gemmi ``add_automatic_links``: disulfides, glycosylation,
        metal-free covalent links).
    hydrogen_distances
        ``"nucleus"`` (default): bonds to hydrogen use the library's nuclear X-H distances
        (``value_nucleus``), as servalcat does for cryo-EM, where riding hydrogens sit at
        nuclear positions; ``"xray"``: the shorter electron-cloud distances.
    united_atom_radii
        Residues modelled without hydrogens get ener_lib's united-atom radii (``vdwh``) in
        the non-bonded repulsion, as Refmac does (default False; the refinement API switches
        it on at 4 Å or worse, see :data:`varref.api.UNITED_ATOM_RESOLUTION`).

    Raises
    ------
    InputError
        A residue has no dictionary (names residue, chain and number and how to supply one).
    """
    st = model.structure.clone()
    for index, atom in enumerate(_atoms(st[0])):
        # prepare_topology renumbers serials, so the atom index rides in b_iso, a field the
        # topology code leaves alone (checked by the tests); a float32 holds integers exactly
        # up to 2^24 atoms, where tls_group_id (16 bits) stopped at 32,767
        atom.b_iso = float(index)
    if model.n_atoms >= 2**24:
        raise InputError(model.source or "model", f"{model.n_atoms} atoms: more than 16.7 million "
                         "atoms are not supported")
    # a cryo-EM model has no crystal symmetry: without this, automatic links would join
    # atoms to symmetry copies made from a CRYST1 record (1J6Z: 17 "bonds" of 36-38 Å)
    st.cell = gemmi.UnitCell()
    st.spacegroup_hm = "P 1"

    residue_names = st[0].get_all_residue_names()
    monlib = load_monomer_library(residue_names, monlib_dir, extra_cifs)
    _require_dictionaries(model, st, monlib)

    if automatic_links:
        gemmi.add_automatic_links(st[0], st, monlib)
    messages = io.StringIO()
    try:
        topo = gemmi.prepare_topology(
            st, monlib, model_index=0, h_change=gemmi.HydrogenChange.NoChange,
            reorder=False, warnings=messages, ignore_unknown_links=True,
        )
    except RuntimeError as exc:
        raise InputError(model.source or "model",
                         f"cannot build restraints: {str(exc).splitlines()[0]}") from None
    for line in messages.getvalue().splitlines():
        log.info("topology: %s", line)

    if hydrogen_distances not in ("nucleus", "xray"):
        raise ValueError(f"hydrogen_distances must be 'nucleus' or 'xray', not {hydrogen_distances!r}")
    bonds = _attach_unknown_atoms(model, _bonds(topo, use_nucleus=hydrogen_distances == "nucleus"))
    return Restraints(
        n_atoms=model.n_atoms,
        bonds=bonds,
        angles=_angles(topo),
        torsions=_torsions(topo),
        chirals=_chirals(topo),
        planes=_planes(topo),
        nonbonded=_nonbonded(model, topo, monlib, bonds, united_atom_radii),
        monlib_dir=None if monlib_dir is None else str(monlib_dir),
        extra_cifs=tuple(str(path) for path in extra_cifs),
    )


def _atoms(gemmi_model: gemmi.Model):
    for chain in gemmi_model:
        for residue in chain:
            yield from residue


def _require_dictionaries(model: Model, st: gemmi.Structure, monlib: gemmi.MonLib) -> None:
    known = set(monlib.monomers.keys())
    for chain in st[0]:
        for residue in chain:
            if residue.name not in known:
                raise InputError(
                    model.source or "model",
                    f"no restraint dictionary for residue {residue.name} (chain {chain.name}, "
                    f"residue {residue.seqid.num}{residue.seqid.icode.strip()}); supply one with "
                    f"--restraints {residue.name}.cif (e.g. made by AceDRG or grade) or point "
                    "--monlib / $CLIBD_MON to a monomer library that has it",
                )


def _serials(atoms) -> list[int]:
    return [int(atom.b_iso) for atom in atoms]


def _bonds(topo: gemmi.Topo, use_nucleus: bool) -> BondRestraints:
    rows = []
    for b in topo.bonds:
        ideal, sigma = b.restr.value, b.restr.esd
        if use_nucleus and (b.atoms[0].is_hydrogen() or b.atoms[1].is_hydrogen()):
            if b.restr.value_nucleus == b.restr.value_nucleus:  # NaN when the library has none
                ideal, sigma = b.restr.value_nucleus, b.restr.esd_nucleus
        if sigma > 0:
            rows.append((_serials(b.atoms), ideal, sigma))
    if not rows:
        return BondRestraints()
    atoms, ideal, sigma = zip(*rows)
    return BondRestraints(np.array(atoms, np.int64), np.array(ideal), np.array(sigma))


#: An atom the dictionary lacks is tied to its nearest atom of the same residue when they are
#: closer than this (Å): a covalent neighbour, not a contact.
UNKNOWN_ATOM_BOND_MAX = 2.0


def _attach_unknown_atoms(model: Model, bonds: BondRestraints) -> BondRestraints:
    """Atoms the residue's dictionary does not define (e.g. a methylated histidine named HIS
    with an extra CZ, as in 3MFP of F-actin) get no covalent restraint from the library and
    would drift freely. Each is tied to its nearest atom of the same residue by a bond at its
    current length (sigma 0.02 Å) and named in a warning: a sensible restraint until the user
    supplies the real dictionary."""
    bonded = np.zeros(model.n_atoms, bool)
    if len(bonds):
        bonded[bonds.atoms.ravel()] = True
    # single-atom residues (waters, ions) have no bonds by nature
    atoms_per_residue = np.bincount(model.residue_index)
    loose = np.flatnonzero(~bonded & (atoms_per_residue[model.residue_index] > 1))
    extra = []
    for i in loose:
        mates = np.flatnonzero((model.residue_index == model.residue_index[i])
                               & (np.arange(model.n_atoms) != i))
        distance = np.linalg.norm(model.xyz[mates] - model.xyz[i], axis=1)
        j = int(mates[np.argmin(distance)])
        label = (f"{model.chain_id[i]}/{model.residue_name[i]} {model.residue_number[i]}"
                 f"{str(model.insertion_code[i]).strip()}")
        if distance.min() < UNKNOWN_ATOM_BOND_MAX:
            extra.append((sorted((int(i), j)), float(distance.min()), 0.02))
            # a terminal hydrogen outside the dictionary is common and harmless: not a warning
            report = log.info if model.is_hydrogen[i] else log.warning
            report("%s: atom %s is not in the %s dictionary (a modified residue under a "
                        "standard name?); tied to %s at its current %.2f Å — supply the real "
                        "dictionary with --restraints for full restraints", label,
                        model.atom_name[i], model.residue_name[i], model.atom_name[j], distance.min())
        else:
            log.warning("%s: atom %s has no restraint and no covalent neighbour; it is "
                        "restrained only by non-bonded repulsion", label, model.atom_name[i])
    if not extra:
        return bonds
    atoms, ideal, sigma = zip(*extra)
    return BondRestraints(np.concatenate([bonds.atoms.reshape(-1, 2), np.array(atoms, np.int64)]),
                          np.concatenate([bonds.ideal, ideal]), np.concatenate([bonds.sigma, sigma]))


def _angles(topo: gemmi.Topo) -> AngleRestraints:
    rows = [(_serials(a.atoms), a.restr.value, a.restr.esd) for a in topo.angles if a.restr.esd > 0]
    if not rows:
        return AngleRestraints()
    atoms, ideal, sigma = zip(*rows)
    return AngleRestraints(np.array(atoms, np.int64), np.array(ideal), np.array(sigma))


def _torsions(topo: gemmi.Topo) -> TorsionRestraints:
    # esd 0 marks informational torsions in the library; they restrain nothing
    rows = [
        (_serials(t.atoms), t.restr.value, t.restr.esd, max(int(t.restr.period), 1))
        for t in topo.torsions
        if t.restr.esd > 0
    ]
    if not rows:
        return TorsionRestraints()
    atoms, ideal, sigma, period = zip(*rows)
    return TorsionRestraints(np.array(atoms, np.int64), np.array(ideal), np.array(sigma),
                             np.array(period, np.int64))


def _chirals(topo: gemmi.Topo) -> ChiralRestraints:
    rows = []
    for chir in topo.chirs:
        sign = chir.restr.sign
        volume = topo.ideal_chiral_abs_volume(chir)
        both = sign == gemmi.ChiralityType.Both
        signed = -volume if sign == gemmi.ChiralityType.Negative else volume
        rows.append((_serials(chir.atoms), signed, CHIRAL_SIGMA, both))
    if not rows:
        return ChiralRestraints()
    atoms, ideal, sigma, both = zip(*rows)
    return ChiralRestraints(np.array(atoms, np.int64), np.array(ideal), np.array(sigma),
                            np.array(both, bool))


def _planes(topo: gemmi.Topo) -> PlaneRestraints:
    atoms: list[int] = []
    offsets = [0]
    sigma = []
    for plane in topo.planes:
        if len(plane.atoms) < 4 or plane.restr.esd <= 0:
            continue  # three points always lie in a plane
        atoms.extend(_serials(plane.atoms))
        offsets.append(len(atoms))
        sigma.append(plane.restr.esd)
    return PlaneRestraints(np.array(atoms, np.int64), np.array(offsets, np.int64),
                           np.array(sigma, np.float64))


def _nonbonded(model: Model, topo: gemmi.Topo, monlib: gemmi.MonLib,
               bonds: BondRestraints, united_atom_radii: bool = False) -> NonbondedParameters:
    n = model.n_atoms
    energy_type = [""] * n
    for chain_info in topo.chain_infos:
        for res_info in chain_info.res_infos:
            for atom in res_info.res:
                chemcomp = res_info.get_final_chemcomp(atom.altloc)
                try:
                    energy_type[int(atom.b_iso)] = chemcomp.get_atom(atom.name).chem_type
                except (RuntimeError, IndexError, ValueError):
                    pass  # atom not in the dictionary: falls back to the element below
    ener = monlib.ener_lib.atoms
    # a residue modelled without its hydrogens gets ener_lib's united-atom radii (atom + its
    # H, "vdwh"), as Refmac does: with bare heavy-atom radii, CH groups pack far closer than
    # their hydrogens allow, which MolProbity (adding H) then reports as clashes
    residue_has_h = np.bincount(model.residue_index, weights=model.is_hydrogen.astype(float),
                                minlength=int(model.residue_index.max()) + 1 if n else 0) > 0
    vdw = np.empty(n)
    ion = np.full(n, np.nan)
    hbond = np.zeros(n, np.int8)
    unknown_elements: set[str] = set()
    for i in range(n):
        key = energy_type[i] if energy_type[i] in ener else model.element[i].upper()
        entry = ener[key] if key in ener else None
        if entry is None:
            # an element ener_lib does not know: a generic 1.8 Å carbon-like radius, said aloud
            vdw[i], hbond[i] = 1.8, HBOND_CODES["N"]
            unknown_elements.add(str(model.element[i]))
            continue
        vdw[i] = entry.vdw_radius
        if united_atom_radii and not residue_has_h[model.residue_index[i]] \
                and np.isfinite(entry.vdwh_radius):
            vdw[i] = entry.vdwh_radius
        ion[i] = entry.ion_radius
        hbond[i] = HBOND_CODES.get(entry.hb_type, 0)
    if unknown_elements:
        log.warning("ener_lib has no van der Waals radius for %s; using 1.8 Å for non-bonded "
                    "repulsion", ", ".join(sorted(unknown_elements)))
    # a hydrogen on a donor is an H-bond hydrogen whatever its own energy type (as Refmac and
    # servalcat type it): the monomer library types every hydrogen of the standard residues
    # "H" (hb_type N), which gave a backbone N-H...O=C bond (H...O ~2.0 Å) a 2.7 Å contact
    parent = hydrogen_parents(model.is_hydrogen, bonds.atoms)
    riding = np.flatnonzero(parent >= 0)
    on_donor = np.isin(hbond[parent[riding]], (HBOND_CODES["D"], HBOND_CODES["B"]))
    hbond[riding[on_donor]] = HBOND_CODES["H"]
    excluded, pairs_14 = bonded_neighbour_pairs(n, bonds.atoms)
    return NonbondedParameters(vdw, ion, hbond, model.is_hydrogen.copy(), excluded, pairs_14)
