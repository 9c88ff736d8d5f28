"""One call that validates a model (optionally against a map), and a text summary of it.

:func:`validate` is what ``varref validate``, refinement, ensembles and series call; it
returns a nested dict of plain Python numbers, strings and lists (JSON-ready once NaN is
mapped to null, see :func:`json_ready`). :func:`format_summary` prints it as a compact
table in the spirit of phenix.validation_cryoem's summary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from os import PathLike

import numpy as np

from varref.engine.geometry_stats import geometry_statistics
from varref.errors import InputError
from varref.maps import Map
from varref.model import Model
from varref.restraints import Restraints, build_restraints
from varref.validation import coot_fallback
from varref.validation.cbeta import cbeta_deviations, peptide_conformations
from varref.validation.clashes import ClashTopology, clashes_and_topology
from varref.validation.mapfit import emringer, map_model_correlations
from varref.validation.ramachandran import (backbone_dihedrals, load_ramachandran_tables,
                                            ramachandran_analysis)
from varref.validation.residues import ResidueTable
from varref.validation.rotamers import load_rotamer_tables, rotamer_analysis
from varref.validation.tables import resolve_reference_data

#: Columns of the per-residue table, in order (also the CSV header).
PER_RESIDUE_COLUMNS = (
    "chain", "resseq", "icode", "resname", "phi", "psi", "omega", "peptide", "rama_class",
    "rama_percentile", "rama_status", "chi1", "chi2", "chi3", "chi4", "rotamer_percentile",
    "rotamer_status", "cbeta_deviation", "cbeta_outlier", "n_clashes", "worst_overlap",
    "cc", "emringer_peak_angle",
)
#: Clashes listed in the report (all are counted).
N_WORST_CLASHES = 20


@dataclass
class TopologyCache:
    """The coordinate-independent pieces :func:`validate` builds for a model — its
    restraints and the clash search's hydrogen-complete topology — kept for further calls
    on the same model at other coordinates (a refinement's start and result). Pass an
    empty one to the first call; it is filled there and reused by the next."""

    restraints: Restraints | None = None
    clash_topology: ClashTopology | None = None


def _not_available(exc: Exception) -> dict[str, object]:
    return {"available": False, "reason": str(exc)}


def validate(model: Model, density: Map | None = None, resolution: float | None = None,
             reference_data: str | PathLike | None = None, with_emringer: bool = True,
             restraints: Restraints | None = None,
             cache: TopologyCache | None = None) -> dict[str, object]:
    """Validate a model: geometry, Ramachandran, rotamers, C-beta, peptides, clashes and,
    with a map, map-model correlations and EMRinger.

    Parameters
    ----------
    model
        The model.
    density
        Target map (optional).
    resolution
        Map resolution in Å; needed for the correlations (EMRinger does not use it).
    reference_data
        Directory with the MolProbity Top8000 grids (default ``$VARREF_REFERENCE_DATA``).
        Without it the Ramachandran and rotamer sections are ``available: False`` with the
        reason; ``ramachandran["coot"]`` then holds coot-headless-api's clipper-table
        summary, which is not MolProbity's (:mod:`varref.validation.coot_fallback`).
    with_emringer
        False skips the EMRinger side-chain scan (``emringer`` is then None; about a
        second per 4,000 atoms), e.g. for summaries that do not show it.
    restraints
        Restraints of ``model``'s atoms for the geometry section, e.g. those a refinement
        used (default: built from the monomer library). They must have been built for
        this topology; the coordinates are ``model``'s.
    cache
        A :class:`TopologyCache` shared by calls on one model at different coordinates:
        restraints and clash topology are built by the first call and reused after.

    Returns
    -------
    dict with keys
        ``model`` (source, counts), ``reference_data``, ``sources`` (what computed the
        Ramachandran and rotamer numbers), ``geometry``, ``ramachandran``, ``rotamers``,
        ``cbeta``, ``peptides``, ``clashes``, ``map_fit`` and ``emringer`` (None without a
        map), and ``per_residue`` (list of dicts with :data:`PER_RESIDUE_COLUMNS`).
        A section that could not be computed is ``{"available": False, "reason": ...}``.

    Raises
    ------
    InputError
        The reference-data directory is missing or lacks the Ramachandran grids.
    """
    residues = ResidueTable(model)
    reference = resolve_reference_data(reference_data)
    if reference is not None:
        rama = ramachandran_analysis(residues, load_ramachandran_tables(reference))
        rota = rotamer_analysis(residues, load_rotamer_tables(reference))
    else:
        # Coot's clipper tables are not MolProbity's (3 classes, other contours: 3J6B gives
        # 8.1 % outliers there, 4.3 % in MolProbity), so its numbers never fill the
        # MolProbity fields that summaries and refinement tables read
        try:
            coot = _without(coot_fallback.coot_ramachandran_analysis(residues), "residues")
        except InputError as exc:
            coot = _not_available(exc)
        rama = {"available": False, "reason": coot_fallback.RAMACHANDRAN_UNAVAILABLE,
                "source": "none", "residues": [], "coot": coot}
        rota = {"available": False, "reason": coot_fallback.ROTAMERS_UNAVAILABLE,
                "source": "none", "residues": []}
    try:
        if restraints is None and cache is not None:
            restraints = cache.restraints
        if restraints is None:
            restraints = build_restraints(model)
        elif restraints.n_atoms != model.n_atoms:
            raise ValueError(f"restraints for {restraints.n_atoms} atoms, the model has "
                             f"{model.n_atoms}")
        geometry: dict[str, object] = geometry_statistics(model.xyz, restraints)
        if cache is not None:
            cache.restraints = restraints
    except InputError as exc:
        geometry = _not_available(exc)
    try:
        clashes, topology = clashes_and_topology(
            model, topology=cache.clash_topology if cache is not None else None,
            restraints=restraints)
        if cache is not None:
            cache.clash_topology = topology
    except InputError as exc:
        clashes = _not_available(exc)
    cbeta = cbeta_deviations(residues)
    peptides = peptide_conformations(residues)

    map_fit = ringer = None
    if density is not None:
        if resolution is None:
            map_fit = {"available": False, "reason": "no resolution given"}
        else:
            map_fit = map_model_correlations(model, density, resolution)
        ringer = emringer(residues, density) if with_emringer else None

    report: dict[str, object] = {
        "model": {
            "source": model.source,
            "n_atoms": model.n_atoms,
            "n_residues": residues.n_residues,
            "n_amino_acids": int(np.count_nonzero(residues.is_amino_acid)),
            "n_chains": len(np.unique(model.chain_id)),
            "n_hydrogens": int(np.count_nonzero(model.is_hydrogen)),
        },
        "reference_data": str(reference) if reference is not None else None,
        "sources": {"ramachandran": rama.get("source"), "rotamers": rota.get("source")},
        "geometry": geometry,
        "ramachandran": _without(rama, "residues"),
        "rotamers": _without(rota, "residues"),
        "cbeta": _without(cbeta, "residues"),
        "peptides": _without(peptides, "residues"),
        "clashes": _clash_summary(clashes),
        "map_fit": _without(map_fit, "per_residue_cc") if map_fit is not None else None,
        "emringer": _without(ringer, "residues") if ringer is not None else None,
    }
    report["per_residue"] = _per_residue_table(residues, rama, rota, cbeta, peptides,
                                               clashes, map_fit, ringer)
    return report


def _without(section: dict[str, object], key: str) -> dict[str, object]:
    return {k: v for k, v in section.items() if k != key}


def _clash_summary(clashes: dict[str, object]) -> dict[str, object]:
    if clashes.get("available") is False:
        return clashes
    summary = _without(clashes, "clashes")
    summary["worst"] = [{k: v for k, v in c.items() if k != "residues"}
                        for c in clashes["clashes"][:N_WORST_CLASHES]]
    return summary


def _per_residue_table(residues: ResidueTable, rama, rota, cbeta, peptides, clashes,
                       map_fit, ringer) -> list[dict[str, object]]:
    nan = float("nan")
    rows = []
    angles = backbone_dihedrals(residues)
    for r in range(residues.n_residues):
        row: dict[str, object] = {key: None for key in PER_RESIDUE_COLUMNS}
        identity = residues.identity(r)
        row.update({k: identity[k] for k in ("chain", "resseq", "icode", "resname")})
        row["omega"] = _finite_or_none(angles["omega"][r])
        rows.append(row)
    for item in rama.get("residues", []):
        rows[item["residue"]].update(phi=item["phi"], psi=item["psi"],
                                     rama_class=item["rama_class"],
                                     rama_percentile=item["percentile"],
                                     rama_status=item["status"])
    for item in rota.get("residues", []):
        row = rows[item["residue"]]
        for k, chi in enumerate(item["chis"] or []):
            row[f"chi{k + 1}"] = chi
        row["rotamer_percentile"] = item["percentile"]
        row["rotamer_status"] = item["status"]
    for item in cbeta["residues"]:
        rows[item["residue"]].update(cbeta_deviation=item["deviation"],
                                     cbeta_outlier=item["outlier"])
    for item in peptides["residues"]:
        rows[item["residue"]]["peptide"] = item["peptide"]
    if clashes.get("available") is not False:
        for row in rows:
            row["n_clashes"] = 0
        for clash in clashes["clashes"]:
            for r in set(clash["residues"]):
                row = rows[r]
                row["n_clashes"] += 1
                row["worst_overlap"] = max(row["worst_overlap"] or 0.0, clash["overlap"])
    if map_fit is not None and map_fit.get("available"):
        for row, cc in zip(rows, map_fit["per_residue_cc"]):
            row["cc"] = cc if math.isfinite(cc) else nan
    if ringer is not None:
        for item in ringer.get("residues", []):
            rows[item["residue"]]["emringer_peak_angle"] = item["peak_angle"]
    return rows


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def json_ready(value):
    """A copy of a report with NaN/inf replaced by None and numpy scalars by Python ones."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    return value


# ---------------------------------------------------------------------------- summary


def _f(value, digits: int = 2, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}{unit}"


def format_summary(report: dict[str, object]) -> str:
    """The report as a compact text table (model, geometry, validation, map fit)."""
    lines = []
    info = report["model"]
    lines.append(f"Model: {info['source'] or '(in memory)'}  atoms {info['n_atoms']}  "
                 f"residues {info['n_residues']} ({info['n_amino_acids']} amino acids)  "
                 f"chains {info['n_chains']}")
    lines.append("")
    geometry = report["geometry"]
    # "bonds"/"angles" are over restraints without H: X-H lengths depend on the convention
    # (electron cloud vs nucleus) the model was built with
    lines.append("Geometry (deviations from the monomer library, restraints without H)")
    if geometry.get("available") is False:
        lines.append(f"  not evaluated: {geometry['reason']}")
    else:
        for key, name, unit in (("bonds", "Bond lengths", " Å"), ("angles", "Bond angles", "°")):
            stats = geometry[key]
            lines.append(f"  {name:<14} r.m.s.d. {_f(stats['rmsd'], 3)}{unit}   max "
                         f"{_f(stats['max_deviation'], 3)}{unit}   > 4 sigma "
                         f"{stats['n_outliers_4sigma']} / {stats['n']}")
    lines.append("")
    lines.append("Validation")
    clashes = report["clashes"]
    if clashes.get("available") is False:
        lines.append(f"  Clashscore      not evaluated: {clashes['reason']}")
    else:
        lines.append(f"  Clashscore      {_f(clashes['clashscore'])}   ({clashes['n_clashes']} "
                     f"overlaps >= {clashes['overlap_cutoff']} Å among {clashes['n_atoms']} "
                     "atoms with riding H)")
    rama = report["ramachandran"]
    if rama.get("available") is False:
        lines.append(f"  Ramachandran    {rama['reason']}")
        coot = rama.get("coot")
        if coot is not None and coot.get("available") is not False:
            lines.append(f"                  Coot/clipper tables (not MolProbity): "
                         f"{coot['n_outliers']} outliers, {coot['n_favoured']} favoured of "
                         f"{coot['n_evaluated']} residues")
    else:
        lines.append(f"  Ramachandran    favoured {_f(rama['percent_favoured'], 2, ' %')}   "
                     f"allowed {_f(rama['percent_allowed'], 2, ' %')}   outliers "
                     f"{_f(rama['percent_outliers'], 2, ' %')}   ({rama['n_evaluated']} "
                     "residues)")
    rota = report["rotamers"]
    if rota.get("available") is False:
        lines.append(f"  Rotamers        {rota['reason']}")
    else:
        missing = ""
        if rota["n_not_evaluated_grid_missing"]:
            missing = (f"; {rota['n_not_evaluated_grid_missing']} "
                       f"{'/'.join(rota['grid_missing_residue_types'])} not evaluated "
                       "(grid missing)")
        if rota["n_not_evaluated_missing_atoms"]:
            missing += (f"; {rota['n_not_evaluated_missing_atoms']} incomplete side chains "
                        "not evaluated")
        lines.append(f"  Rotamers        favoured {_f(rota['percent_favoured'], 2, ' %')}   "
                     f"outliers {_f(rota['percent_outliers'], 2, ' %')}   "
                     f"({rota['n_evaluated']} side chains{missing})")
    cbeta = report["cbeta"]
    lines.append(f"  C-beta dev.     {cbeta['n_outliers']} >= 0.25 Å of {cbeta['n_evaluated']}   "
                 f"max {_f(cbeta['max_deviation'], 3, ' Å')}")
    peptides = report["peptides"]
    lines.append(f"  Peptides        cis-Pro {peptides['n_cis_proline']}   cis non-Pro "
                 f"{peptides['n_cis_general']}   twisted {peptides['n_twisted']}   "
                 f"(of {peptides['n_peptides']})")
    lines.append(f"  Sources         Ramachandran: {report['sources']['ramachandran']}")
    lines.append(f"                  rotamers: {report['sources']['rotamers']}")
    map_fit, ringer = report.get("map_fit"), report.get("emringer")
    if map_fit is not None or ringer is not None:
        lines.append("")
        lines.append("Model vs map")
        if map_fit is not None and map_fit.get("available"):
            lines.append(f"  CC_mask {_f(map_fit['cc_mask'], 3)}   "
                         f"CC_box {_f(map_fit['cc_box'], 3)}   "
                         f"CC_volume {_f(map_fit['cc_volume'], 3)}   CC_peaks "
                         f"{_f(map_fit['cc_peaks'], 3)}   (d = {map_fit['resolution']} Å)")
        elif map_fit is not None:
            lines.append(f"  correlations not computed: {map_fit['reason']}")
        if ringer is not None:
            lines.append(f"  EMRinger        {_f(ringer.get('score'))}   ({ringer['n_scanned']} "
                         f"side chains scanned; {_f(ringer.get('score_model_length'))} with "
                         f"L = {ringer['model_length']} residues)")
    return "\n".join(lines)
