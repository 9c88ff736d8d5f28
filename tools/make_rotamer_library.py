"""Derive varref's compact rotamer library from the MolProbity Top8000 rotamer central values.

Writes ``varref/data/rotamer_library.json``: for every amino acid with chi angles (the 18
residue types of ``Top8000_rotamer_central_values``; MSE uses MET's entry), its named
rotamers with, per chi, the central value (``chiN_mean``) and width (``chiN_esd``,
degrees), the number of Top8000 residues in the rotamer and its frequency (%).

* Every value is copied from ``Top8000/Top8000_rotamer_central_values/<RES>.csv`` (the
  bond-angle columns of those tables are not used). All 18 tables are in the reference
  data, so nothing is derived from the percentile grids; a missing table stops the script
  rather than being guessed.
* Symmetric last chi (Asp chi2, Glu chi3, Phe and Tyr chi2; OD1/OD2, OE1/OE2 and CD1/CD2
  are chemically equivalent): the central value is folded into [0, 180), as
  :func:`varref.validation.rotamers.fold_symmetric` folds measured chis, and the chi is
  flagged ``symmetric`` (period 2). The table lists e.g. Phe ``p90`` at chi2 = -90, which
  is stored as 90.
* Other central values are stored in (-180, 180].
* Rotamers are sorted by decreasing frequency, then name (a stable, documented order).

Usage (from the repository root; the Top8000 data are CC-BY-4.0 and not shipped)::

    python tools/make_rotamer_library.py [--top8000 ../shared/data/validation/top8000]

The licence and attribution of the derived table are in ``varref/data/TOP8000_LICENSE.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from varref.validation.rotamers import CHI_ATOMS, SYMMETRIC_LAST_CHI

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TOP8000 = REPO.parent / "shared" / "data" / "validation" / "top8000"
OUTPUT = REPO / "varref" / "data" / "rotamer_library.json"
CENTRAL_VALUES = "Top8000_rotamer_central_values"
SOURCE = ("MolProbity Top8000 rotamer central values (Top8000/Top8000_rotamer_central_values/"
          "*.csv of github.com/rlabduke/reference_data, commit "
          "cbe300663a2bb55015cf9e9978c720cb12dbf52f); Hintze et al. (2016) Proteins 84, 1177; "
          "CC-BY-4.0, see TOP8000_LICENSE.md")
#: Residue types of the library: every CHI_ATOMS entry except the MET alias MSE.
RESIDUES = sorted(name for name in CHI_ATOMS if name != "MSE")


def wrap180(angle: float) -> float:
    """Degrees in (-180, 180]."""
    wrapped = (angle + 180.0) % 360.0 - 180.0
    return 180.0 if wrapped == -180.0 else wrapped


def read_central_values(path: Path, resname: str) -> list[dict]:
    """Rotamers of one ``<RES>.csv`` table, in the library's layout and order."""
    n_chi = len(CHI_ATOMS[resname])
    symmetric = resname in SYMMETRIC_LAST_CHI
    rotamers = []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["res_type"].strip().upper() != resname:
                raise SystemExit(f"{path}: row for {row['res_type']!r}, expected {resname}")
            chi = [float(row[f"chi{i + 1}_mean"]) for i in range(n_chi)]
            esd = [float(row[f"chi{i + 1}_esd"]) for i in range(n_chi)]
            chi = [wrap180(c) for c in chi]
            if symmetric:
                chi[-1] = chi[-1] % 180.0
            rotamers.append({"name": row["rotamer"].strip(), "chi": chi, "sigma": esd,
                             "n": int(row["n"]), "frequency": float(row["frequency%"])})
    if not rotamers:
        raise SystemExit(f"{path}: no rotamer rows")
    names = [r["name"] for r in rotamers]
    if len(set(names)) != len(names):
        raise SystemExit(f"{path}: duplicate rotamer names")
    rotamers.sort(key=lambda r: (-r["frequency"], r["name"]))
    return rotamers


def build_library(top8000: Path) -> dict:
    folder = top8000 / CENTRAL_VALUES
    residues = {}
    for resname in RESIDUES:
        path = folder / f"{resname}.csv"
        if not path.is_file():
            raise SystemExit(f"{path} is missing; this script does not guess central values")
        residues[resname] = {
            "n_chi": len(CHI_ATOMS[resname]),
            "symmetric_last_chi": resname in SYMMETRIC_LAST_CHI,
            "rotamers": read_central_values(path, resname),
        }
    return {"format": 1, "source": SOURCE, "units": "degrees",
            "aliases": {"MSE": "MET"}, "residues": residues}


def dumps_compact(library: dict) -> str:
    """JSON with one rotamer per line (small, and diffs stay readable)."""
    lines = ["{"]
    for key in ("format", "source", "units", "aliases"):
        lines.append(f"  {json.dumps(key)}: {json.dumps(library[key])},")
    lines.append('  "residues": {')
    names = list(library["residues"])
    for i, resname in enumerate(names):
        entry = library["residues"][resname]
        lines.append(f'    "{resname}": {{"n_chi": {entry["n_chi"]}, "symmetric_last_chi": '
                     f'{json.dumps(entry["symmetric_last_chi"])}, "rotamers": [')
        rows = [f"      {json.dumps(r)}" for r in entry["rotamers"]]
        lines.append(",\n".join(rows))
        lines.append("    ]}" + ("," if i < len(names) - 1 else ""))
    lines.append("  }")
    lines.append("}")
    text = "\n".join(lines)
    if json.loads(text) != library:  # the hand-made layout must be the same JSON
        raise SystemExit("internal error: compact JSON does not round-trip")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top8000", type=Path, default=DEFAULT_TOP8000,
                        help="the Top8000 folder of rlabduke/reference_data")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    library = build_library(args.top8000)
    text = dumps_compact(library)
    args.output.write_text(text + "\n", encoding="utf-8")
    n = sum(len(r["rotamers"]) for r in library["residues"].values())
    print(f"wrote {args.output}: {len(library['residues'])} residue types, {n} rotamers, "
          f"{len(text)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
