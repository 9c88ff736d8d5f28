"""C-beta deviation and peptide-bond (omega) conformation.

C-beta deviation (Lovell et al. 2003, Proteins 50, 437; cctbx
``mmtbx/validation/cbetadev.py``): the ideal CB is built twice from the backbone —
from N, C, CA with the C-CA-CB angle and the N-C-CA-CB dihedral, and from C, N, CA with the
N-CA-CB angle and the C-N-CA-CB dihedral — the two positions are averaged and the average
is put back at the ideal CA-CB distance. The deviation is the distance of the model's CB
from that point; >= 0.25 Å is an outlier. Ideal values per residue type are
:data:`IDEAL_CBETA_GEOMETRY` (MolProbity's table; Ala, Pro, beta-branched Val/Thr/Ile,
everything else). Glycine has no CB and is skipped.

Peptide conformation (MolProbity omegalyze; Williams et al. 2018): omega of the peptide
preceding residue i, CA(i-1)-C(i-1)-N(i)-CA(i); cis if |omega| < 30 degrees, twisted if
30 <= |omega| < 150 degrees, trans otherwise. Cis peptides before proline are common
(~5 % of prolines) and are counted separately from non-proline cis peptides (~0.05 %).
"""

from __future__ import annotations

import numpy as np

from varref.validation.residues import ResidueTable, dihedrals_of, place_atom

#: (CA-CB distance, C-CA-CB angle, N-C-CA-CB dihedral, N-CA-CB angle, C-N-CA-CB dihedral)
IDEAL_CBETA_GEOMETRY = {
    "ALA": (1.536, 110.1, 122.9, 110.6, -122.6),
    "PRO": (1.530, 112.2, 115.1, 103.0, -120.7),
    "VAL": (1.540, 109.1, 123.4, 111.5, -122.0),
    "THR": (1.540, 109.1, 123.4, 111.5, -122.0),
    "ILE": (1.540, 109.1, 123.4, 111.5, -122.0),
}
IDEAL_CBETA_DEFAULT = (1.530, 110.1, 122.8, 110.5, -122.6)
CBETA_OUTLIER = 0.25

CIS_LIMIT = 30.0
TWISTED_LIMIT = 150.0


def ideal_cbeta(n: np.ndarray, ca: np.ndarray, c: np.ndarray, resname: str) -> np.ndarray:
    """Ideal CB position(s) from backbone N, CA, C ((3,) or (m, 3)) for one residue type."""
    distance, angle_c, dihedral_n, angle_n, dihedral_c = IDEAL_CBETA_GEOMETRY.get(
        resname, IDEAL_CBETA_DEFAULT)
    from_c_side = place_atom(n, c, ca, distance, angle_c, dihedral_n)
    from_n_side = place_atom(c, n, ca, distance, angle_n, dihedral_c)
    mean = 0.5 * (from_c_side + from_n_side)
    direction = mean - ca
    return ca + direction * (distance / np.linalg.norm(direction, axis=-1, keepdims=True))


def cbeta_deviations(residues: ResidueTable) -> dict[str, object]:
    """C-beta deviation of every amino acid with N, CA, C and CB (Gly excluded).

    Returns
    -------
    dict with ``n_evaluated``, ``n_outliers``, ``percent_outliers``, ``max_deviation``,
    ``outliers`` (labels) and ``residues`` (``residue``, ``deviation`` Å, ``outlier``).
    """
    xyz = residues.model.xyz
    n, ca, c, cb = (residues.atoms(name) for name in ("N", "CA", "C", "CB"))
    evaluated = np.flatnonzero(residues.is_amino_acid & (residues.name != "GLY")
                               & (n >= 0) & (ca >= 0) & (c >= 0) & (cb >= 0))
    deviation = np.full(residues.n_residues, np.nan)
    for resname in np.unique(residues.name[evaluated]):
        members = evaluated[residues.name[evaluated] == resname]
        ideal = ideal_cbeta(xyz[n[members]], xyz[ca[members]], xyz[c[members]], str(resname))
        deviation[members] = np.linalg.norm(xyz[cb[members]] - ideal, axis=1)
    rows = [{"residue": int(r), "deviation": float(deviation[r]),
             "outlier": bool(deviation[r] >= CBETA_OUTLIER)} for r in evaluated]
    n_outliers = sum(row["outlier"] for row in rows)
    return {
        "n_evaluated": len(rows),
        "n_outliers": n_outliers,
        "percent_outliers": 100.0 * n_outliers / len(rows) if rows else float("nan"),
        "max_deviation": float(np.nanmax(deviation)) if rows else float("nan"),
        "outliers": [str(residues.label[row["residue"]]) for row in rows if row["outlier"]],
        "residues": rows,
    }


def peptide_type(omega: float) -> str:
    """'cis', 'twisted' or 'trans' for an omega angle in degrees."""
    if abs(omega) < CIS_LIMIT:
        return "cis"
    if abs(omega) < TWISTED_LIMIT:
        return "twisted"
    return "trans"


def peptide_conformations(residues: ResidueTable) -> dict[str, object]:
    """Classify every peptide bond between linked amino acids.

    Returns
    -------
    dict with ``n_peptides``, ``n_cis_proline``, ``n_cis_general``, ``n_twisted``,
    ``percent_cis_proline`` (of peptides before Pro), ``percent_cis_general`` and
    ``percent_twisted`` (of the other peptides, as MolProbity reports them),
    ``cis`` / ``twisted`` (labels of the residue after the peptide) and ``residues``
    (``residue``, ``omega``, ``peptide``, ``before_proline``).
    """
    prev = residues.previous
    has_prev = np.flatnonzero(prev >= 0)
    ca, c, n = residues.atoms("CA"), residues.atoms("C"), residues.atoms("N")
    quads = np.stack([ca[prev[has_prev]], c[prev[has_prev]], n[has_prev], ca[has_prev]], axis=1)
    omega = dihedrals_of(residues.model.xyz, quads)
    rows = []
    for r, w in zip(has_prev, omega):
        if not np.isfinite(w):
            continue
        rows.append({"residue": int(r), "omega": float(w), "peptide": peptide_type(w),
                     "before_proline": bool(residues.name[r] == "PRO")})
    pro = [row for row in rows if row["before_proline"]]
    general = [row for row in rows if not row["before_proline"]]
    n_cis_pro = sum(row["peptide"] == "cis" for row in pro)
    n_cis_gen = sum(row["peptide"] == "cis" for row in general)
    n_twisted = sum(row["peptide"] == "twisted" for row in rows)

    def percent(k: int, total: int) -> float:
        return 100.0 * k / total if total else 0.0

    return {
        "n_peptides": len(rows),
        "n_cis_proline": n_cis_pro,
        "n_cis_general": n_cis_gen,
        "n_twisted": n_twisted,
        "percent_cis_proline": percent(n_cis_pro, len(pro)),
        "percent_cis_general": percent(n_cis_gen, len(general)),
        "percent_twisted": percent(n_twisted, len(rows)),
        "cis": [str(residues.label[row["residue"]]) for row in rows if row["peptide"] == "cis"],
        "twisted": [str(residues.label[row["residue"]]) for row in rows
                    if row["peptide"] == "twisted"],
        "residues": rows,
    }
