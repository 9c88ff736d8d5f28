"""Atomic models as flat numpy arrays, read and written through gemmi.

A :class:`Model` is one conformation of one structure: per-atom arrays (coordinates,
identifiers, B, occupancy) in a fixed atom order, plus the gemmi ``Structure`` it was read
from, kept as a template. Writing clones the template and copies the arrays back in the
same order, so every identifier, header record, link and entity survives a round trip.

Atom order is gemmi's iteration order (chain, residue, atom) after alternative conformations
were resolved; ``Model.xyz[i]`` is atom ``i`` everywhere in varref (restraints, engine,
ensembles).

Alternative conformations: by default each residue keeps the conformer with the highest
summed occupancy (ties go to the first altloc in the file); atoms without an altloc are
always kept. ``altloc="first"`` keeps the first conformer instead, as gemmi and Coot do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path

import gemmi
import numpy as np

from varref.atomic import atomic_path
from varref.errors import InputError

PDB_SUFFIXES = (".pdb", ".ent")
CIF_SUFFIXES = (".cif", ".mmcif")


@dataclass(eq=False)
class Model:
    """One conformation of an atomic model as flat per-atom arrays.

    Attributes
    ----------
    xyz : (N, 3) float64
        Cartesian coordinates in Å.
    element : (N,) str
        Element symbol as in the file (``"C"``, ``"FE"``, ``"H"``; deuterium is ``"D"``).
    atomic_number : (N,) int64
    atom_name, residue_name, chain_id, insertion_code, altloc : (N,) str
    residue_number : (N,) int64
        Author sequence number.
    residue_index : (N,) int64
        Index of the atom's residue, 0..n_residues-1 in file order.
    b_iso, occupancy : (N,) float64
    is_hydrogen, is_water : (N,) bool
    structure : gemmi.Structure
        Template holding exactly this model (one gemmi Model) with altlocs resolved; never
        modified after construction — writers clone it.
    source : str
        Where the model came from (file name), for messages.
    """

    xyz: np.ndarray
    element: np.ndarray
    atomic_number: np.ndarray
    atom_name: np.ndarray
    residue_name: np.ndarray
    chain_id: np.ndarray
    residue_number: np.ndarray
    insertion_code: np.ndarray
    altloc: np.ndarray
    residue_index: np.ndarray
    b_iso: np.ndarray
    occupancy: np.ndarray
    is_hydrogen: np.ndarray
    is_water: np.ndarray
    structure: gemmi.Structure = field(repr=False)
    source: str = ""

    @property
    def n_atoms(self) -> int:
        return len(self.xyz)

    @property
    def n_residues(self) -> int:
        return int(self.residue_index.max()) + 1 if self.n_atoms else 0

    def with_xyz(self, xyz: np.ndarray) -> "Model":
        """A copy with new coordinates (same template and identifiers)."""
        xyz = np.array(xyz, dtype=np.float64, copy=True)
        if xyz.shape != self.xyz.shape:
            raise ValueError(f"coordinates of shape {xyz.shape}, model has {self.xyz.shape}")
        return replace(self, xyz=xyz)

    def residue_labels(self) -> list[str]:
        """One label per residue, ``"A/GLY 12"`` style (chain/name number+icode)."""
        first = np.unique(self.residue_index, return_index=True)[1]
        return [
            f"{self.chain_id[i]}/{self.residue_name[i]} {self.residue_number[i]}"
            f"{self.insertion_code[i].strip()}"
            for i in first
        ]

    def to_structure(self, xyz: np.ndarray | None = None) -> gemmi.Structure:
        """A new gemmi Structure with this model's (or the given) coordinates, B and occupancy."""
        xyz = self.xyz if xyz is None else np.asarray(xyz, dtype=np.float64)
        st = self.structure.clone()
        # Python floats (tolist) rather than numpy scalars per atom: 2-3x faster
        for atom, position, b_iso, occupancy in zip(_iter_atoms(st[0]), xyz.tolist(),
                                                    self.b_iso.tolist(),
                                                    self.occupancy.tolist()):
            atom.pos = gemmi.Position(*position)
            atom.b_iso = b_iso
            atom.occ = occupancy
        return st

    @classmethod
    def from_structure(
        cls,
        structure: gemmi.Structure,
        model_index: int = 0,
        altloc: str = "occupancy",
        source: str = "",
    ) -> "Model":
        """Build a Model from model ``model_index`` of a gemmi Structure (which is not modified).

        Parameters
        ----------
        altloc
            ``"occupancy"`` (default): per residue keep the highest-occupancy conformer;
            ``"first"``: keep the first conformer.
        """
        if altloc not in ("occupancy", "first"):
            raise ValueError(f"altloc must be 'occupancy' or 'first', not {altloc!r}")
        st = structure.clone()
        # keep only the requested model so the template is exactly one conformation
        for k in range(len(st) - 1, -1, -1):
            if k != model_index:
                del st[k]
        st.remove_empty_chains()
        if altloc == "occupancy":
            _keep_highest_occupancy_conformer(st[0])
        st.remove_alternative_conformations()
        _repair_polymer_after_ter(st)
        st.setup_entities()
        return cls._from_single_model_structure(st, source)

    @classmethod
    def _from_single_model_structure(cls, st: gemmi.Structure, source: str) -> "Model":
        # one pass over the atoms reading each attribute once (gemmi's accessors cost per
        # call: ~5 us an atom when every field was a separate pass)
        xyz, element, atomic_number, atom_name, altloc = [], [], [], [], []
        b_iso, occupancy, is_hydrogen = [], [], []
        residue_name, chain_id, residue_number, insertion_code = [], [], [], []
        residue_index, is_water = [], []
        residue_counter = -1
        for chain in st[0]:
            chain_name = chain.name
            for residue in chain:
                residue_counter += 1
                n_before = len(atom_name)
                for atom in residue:
                    atom_element = atom.element
                    xyz.append(atom.pos.tolist())
                    element.append(atom_element.name)
                    atomic_number.append(atom_element.atomic_number)
                    atom_name.append(atom.name)
                    altloc.append(atom.altloc.strip("\0"))
                    b_iso.append(atom.b_iso)
                    occupancy.append(atom.occ)
                    is_hydrogen.append(atom.is_hydrogen())
                n = len(atom_name) - n_before
                seqid = residue.seqid
                residue_name += [residue.name] * n
                chain_id += [chain_name] * n
                residue_number += [seqid.num] * n
                insertion_code += [seqid.icode] * n
                residue_index += [residue_counter] * n
                is_water += [residue.is_water()] * n

        def text(values: list[str]) -> np.ndarray:
            return np.array(values, dtype=object).astype(str)

        return cls(
            xyz=np.array(xyz, dtype=np.float64).reshape(-1, 3),
            element=text(element),
            atomic_number=np.array(atomic_number, dtype=np.int64),
            atom_name=text(atom_name),
            residue_name=text(residue_name),
            chain_id=text(chain_id),
            residue_number=np.array(residue_number, dtype=np.int64),
            insertion_code=text(insertion_code),
            altloc=text(altloc),
            residue_index=np.array(residue_index, dtype=np.int64),
            b_iso=np.array(b_iso, dtype=np.float64),
            occupancy=np.array(occupancy, dtype=np.float64),
            is_hydrogen=np.array(is_hydrogen, dtype=bool),
            is_water=np.array(is_water, dtype=bool),
            structure=st,
            source=source,
        )


def _iter_atoms(gemmi_model: gemmi.Model):
    for chain in gemmi_model:
        for residue in chain:
            yield from residue


def _repair_polymer_after_ter(st: gemmi.Structure) -> None:
    """Undo a TER record in the middle of a chain (seen in processed PDB files).

    gemmi reads ATOM residues after a TER as non-polymer, which would leave them unlinked
    to the chain. Standard amino acids and nucleotides written as ATOM records are polymer.
    """
    changed = False
    for chain in st[0]:
        for residue in chain:
            if residue.het_flag != "A" or residue.entity_type == gemmi.EntityType.Polymer:
                continue
            info = gemmi.find_tabulated_residue(residue.name)
            if info is not None and (info.is_amino_acid() or info.is_nucleic_acid()):
                residue.entity_type = gemmi.EntityType.Polymer
                changed = True
    if changed:
        # residues the reader left untyped (e.g. an unknown residue before the TER) would
        # make assign_subchains fail with "missing entity_type"; type them first
        st.add_entity_types(False)
        st.entities.clear()
        st.assign_subchains(force=True)


def _keep_highest_occupancy_conformer(gemmi_model: gemmi.Model) -> None:
    """Per residue, drop atoms of every altloc but the one with the highest total occupancy."""
    for chain in gemmi_model:
        for residue in chain:
            occupancy_by_altloc: dict[str, float] = {}
            for atom in residue:
                if atom.has_altloc():
                    occupancy_by_altloc[atom.altloc] = occupancy_by_altloc.get(atom.altloc, 0.0) + atom.occ
            if len(occupancy_by_altloc) < 2:
                continue
            # max() keeps the first-seen key among equals: ties go to the first conformer
            best = max(occupancy_by_altloc, key=lambda k: occupancy_by_altloc[k])
            for k in range(len(residue) - 1, -1, -1):
                if residue[k].has_altloc() and residue[k].altloc != best:
                    del residue[k]


def _check_readable(path: Path, what: str) -> None:
    if not path.exists():
        raise InputError(path, f"{what} file not found")
    if path.is_dir():
        raise InputError(path, f"is a directory, expected a {what} file")
    if path.stat().st_size == 0:
        raise InputError(path, f"{what} file is empty")


def read_structure(path: str | PathLike) -> gemmi.Structure:
    """Read a PDB or mmCIF file with gemmi, turning every failure into an :class:`InputError`.

    Detects truncation where it is detectable: gemmi rejects a cut ATOM record or an mmCIF
    loop whose value count is not a multiple of its tags; additionally a text file that ends
    in the middle of a coordinate record is reported as truncated.
    """
    path = Path(path)
    _check_readable(path, "model")
    try:
        st = gemmi.read_structure(str(path), merge_chain_parts=True)
    except (RuntimeError, ValueError, IndexError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(path, f"cannot read model (truncated or malformed?): {message}") from None
    if st.input_format == gemmi.CoorFormat.Pdb and not path.name.endswith(".gz"):
        _check_pdb_not_cut(path)
    if len(st) == 0 or st[0].count_atom_sites() == 0:
        raise InputError(path, "no atoms found (is this a PDB or mmCIF coordinate file?)")
    return st


def _check_pdb_not_cut(path: Path) -> None:
    with open(path, "rb") as fh:
        fh.seek(max(0, path.stat().st_size - 200))
        tail = fh.read()
    if tail.endswith(b"\n"):
        return
    last_line = tail.rsplit(b"\n", 1)[-1]
    if last_line[:6] in (b"ATOM  ", b"HETATM") and len(last_line.rstrip()) < 78:
        raise InputError(path, "truncated: the last ATOM/HETATM record is incomplete")


def read_model(
    path: str | PathLike, model_index: int = 0, altloc: str = "occupancy"
) -> Model:
    """Read one model (default: the first) of a PDB or mmCIF file.

    Parameters
    ----------
    path
        PDB or mmCIF file (optionally gzipped).
    model_index
        Which MODEL of a multi-model file, 0-based.
    altloc
        ``"occupancy"`` (default) or ``"first"``; see the module docstring.

    Raises
    ------
    InputError
        Missing, empty, truncated or malformed file; no atoms; model index out of range.
    """
    st = read_structure(path)
    if not 0 <= model_index < len(st):
        raise InputError(path, f"has {len(st)} model(s); model index {model_index} does not exist")
    return model_from_file_structure(st, path, model_index, altloc)


def read_models(path: str | PathLike, altloc: str = "occupancy") -> list[Model]:
    """Read every MODEL of a (multi-model) PDB or mmCIF file."""
    st = read_structure(path)
    return [model_from_file_structure(st, path, k, altloc) for k in range(len(st))]


#: Largest coordinate magnitude accepted, Å: beyond it a value is a corrupt field (a
#: ribosome spans ~300 Å; maps rarely exceed 1000 Å), and 1e30 would overflow the kernels.
MAX_COORDINATE = 1e5


def model_from_file_structure(st: gemmi.Structure, path: str | PathLike, model_index: int = 0,
                              altloc: str = "occupancy") -> Model:
    """:meth:`Model.from_structure` for a structure read from ``path``, with every problem of
    the file's content (see :func:`check_model_values`) raised as an :class:`InputError`."""
    try:
        model = Model.from_structure(st, model_index=model_index, altloc=altloc, source=str(path))
    except RuntimeError as exc:
        # gemmi's entity setup fails on a residue it cannot classify inside a polymer chain
        unknown = [f"{residue.name} (chain {chain.name}, residue {residue.seqid.num})"
                   for chain in st[model_index] for residue in chain
                   if gemmi.find_tabulated_residue(residue.name) is None]
        where = f"; first residue unknown to gemmi: {unknown[0]}" if unknown else ""
        raise InputError(path, f"cannot assign residues to chains/entities: "
                         f"{str(exc).splitlines()[0]}{where}") from None
    except UnicodeDecodeError:
        raise InputError(path, "contains bytes that are not UTF-8 text in an atom, residue "
                         "or chain name") from None
    check_model_values(model, path)
    return model


def check_model_values(model: Model, path: str | PathLike) -> None:
    """Refuse NaN/infinite or absurd (``|x| > MAX_COORDINATE``) coordinates and NaN/infinite
    B-factors or occupancies, naming the first bad atom.

    Raises
    ------
    InputError
    """
    def first(mask: np.ndarray) -> str:
        i = int(np.flatnonzero(mask)[0])
        return (f"{int(mask.sum())} atom(s), first {model.atom_name[i]} of "
                f"{model.residue_name[i]} {model.residue_number[i]} chain {model.chain_id[i]}")

    bad = ~np.isfinite(model.xyz).all(axis=1)
    if bad.any():
        raise InputError(path, f"NaN or infinite coordinates in {first(bad)}")
    bad = (np.abs(model.xyz) > MAX_COORDINATE).any(axis=1)
    if bad.any():
        raise InputError(path, f"coordinates beyond ±{MAX_COORDINATE:g} Å in {first(bad)}")
    for values, what in ((model.b_iso, "B-factor"), (model.occupancy, "occupancy")):
        bad = ~np.isfinite(values)
        if bad.any():
            raise InputError(path, f"NaN or infinite {what} in {first(bad)}")


def require_polymer(model: Model, source: str | PathLike | None = None) -> None:
    """Refuse a model that refinement cannot work on: no heavy atoms, or no chain with at
    least two non-water residues (the weight search and the restraints need a polymer
    segment; water-only, single-residue or two-atom models have none).

    Raises
    ------
    InputError
        Naming ``source`` (default: the model's file).
    """
    name = str(source or model.source or "model")
    heavy = ~model.is_hydrogen
    if not heavy.any():
        raise InputError(name, "has hydrogen atoms only; nothing to refine or validate")
    residues = np.unique(model.residue_index[heavy & ~model.is_water])
    first_atom = np.unique(model.residue_index, return_index=True)[1]
    chains = model.chain_id[first_atom][residues]
    if not any(np.count_nonzero(chains == chain) >= 2 for chain in set(chains.tolist())):
        raise InputError(name, f"no polymer to refine: needs a chain of at least 2 non-water "
                         f"residues ({len(residues)} non-water residue(s), "
                         f"{int(model.is_water.sum())} water atom(s))")


def _write_structure(st: gemmi.Structure, path: Path,
                     extra_categories: dict[str, dict[str, list]] | None = None) -> None:
    """Write by suffix (.pdb/.ent → PDB, .cif/.mmcif → mmCIF) atomically; mmCIF output gets
    ``extra_categories`` (e.g. ``_em_3d_fitting``) as extra tables."""
    suffix = path.suffix.lower()
    if suffix not in PDB_SUFFIXES + CIF_SUFFIXES:
        raise InputError(path, "unknown model format: use a .pdb or .cif suffix")
    with atomic_path(path) as tmp:
        if suffix in PDB_SUFFIXES:
            st.write_pdb(str(tmp))
        else:
            doc = st.make_mmcif_document()
            for category, table in (extra_categories or {}).items():
                doc[0].set_mmcif_category(category, table)
            doc.write_file(str(tmp))


@dataclass
class RefinementRecord:
    """What a refinement writes into its model file (mmCIF ``_software``, ``_refine``,
    ``_refine_ls_restr``, ``_em_3d_fitting``; PDB REMARK 3 and CRYST1).

    ``cell`` is the map's box (a, b, c in Å; the model is written in P1 with it), the
    metrics are the after-refinement values.
    """

    program: str
    version: str
    resolution: float
    cell: tuple[float, float, float] | None = None
    cc_mask: float | None = None
    cc_box: float | None = None
    bond_rmsd: float | None = None
    angle_rmsd: float | None = None
    n_bonds: int | None = None
    n_angles: int | None = None
    mean_b: float | None = None
    target: str = "map value at atom centres, then density correlation"


def _apply_record(st: gemmi.Structure, record: RefinementRecord) -> dict[str, dict[str, list]]:
    if record.cell is not None:
        st.cell = gemmi.UnitCell(*record.cell, 90.0, 90.0, 90.0)
        st.spacegroup_hm = "P 1"
    software = gemmi.SoftwareItem()
    software.name, software.version = record.program, record.version
    software.classification = gemmi.SoftwareItem.Classification.Refinement
    st.meta.software = [*st.meta.software, software]
    info = gemmi.RefinementInfo()
    info.id = "ELECTRON MICROSCOPY"
    info.resolution_high = float(record.resolution)
    if record.mean_b is not None:
        info.mean_b = float(record.mean_b)
    restraints = []
    for kind, value, count in (("f_bond_d", record.bond_rmsd, record.n_bonds),
                               ("f_angle_d", record.angle_rmsd, record.n_angles)):
        if value is not None:
            restr = gemmi.RefinementInfo.Restr(kind)
            restr.dev_ideal = float(value)
            if count is not None:
                restr.count = int(count)
            restraints.append(restr)
    info.restr_stats = restraints
    st.meta.refinement = [info]

    def text(value) -> str:
        return "?" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))

    fitting = {"id": ["1"], "entry_id": [st.name or "varref"], "method": ["real-space refinement"],
               "ref_space": ["REAL"], "ref_protocol": ["FLEXIBLE FIT"],
               "target_criteria": [record.target], "software_name": [record.program],
               "overall_b_value": [text(record.mean_b)],
               "details": [f"resolution {record.resolution} A; CC_mask {text(record.cc_mask)}; "
                           f"CC_box {text(record.cc_box)}; heavy-atom bond/angle r.m.s.d. "
                           f"{text(record.bond_rmsd)} A / {text(record.angle_rmsd)} deg"]}
    return {"_em_3d_fitting.": fitting}


def write_model(model: Model, path: str | PathLike, xyz: np.ndarray | None = None,
                b_iso: np.ndarray | None = None, record: RefinementRecord | None = None) -> None:
    """Write a model as PDB or mmCIF by suffix, optionally with replacement coordinates
    ``xyz``, B-factors ``b_iso`` and a refinement ``record`` (cell, software, statistics)."""
    source = model if b_iso is None else replace(model, b_iso=np.asarray(b_iso, dtype=np.float64))
    st = source.to_structure(xyz)
    extra = _apply_record(st, record) if record is not None else None
    _write_structure(st, Path(path), extra)


def write_ensemble(
    model: Model, coordinates: np.ndarray | Sequence[np.ndarray], path: str | PathLike
) -> None:
    """Write K conformations of one model as a multi-model file (MODEL 1..K).

    ``coordinates`` is (K, N, 3) or a sequence of (N, 3) arrays. PDB output uses
    MODEL/ENDMDL records and mmCIF output ``pdbx_PDB_model_num`` — both open as a
    trajectory/ensemble in ChimeraX and PyMOL.
    """
    coordinates = [np.asarray(c, dtype=np.float64) for c in coordinates]
    if not coordinates:
        raise ValueError("an ensemble needs at least one member")
    st = model.to_structure(coordinates[0])
    template = st[0].clone()
    for k, xyz in enumerate(coordinates[1:], start=2):
        member = template.clone()
        for i, atom in enumerate(_iter_atoms(member)):
            atom.pos = gemmi.Position(*xyz[i])
        member.num = k
        st.add_model(member)
    st[0].num = 1
    _write_structure(st, Path(path))
