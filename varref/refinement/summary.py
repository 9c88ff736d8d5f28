"""The end-of-refinement table (as Phenix prints one): validation before and after.

Rows: Ramachandran favoured/outliers, rotamer outliers, C-beta deviations, clashscore,
bond/angle r.m.s.d. (heavy atoms), CC_mask, CC_box and, when computed, the map–model
FSC-average. Values come from two :func:`varref.validation.validate` reports.
"""

from __future__ import annotations

import math

#: (label, path in the validation report, unit, digits, better: "high" | "low")
ROWS = (
    ("Ramachandran favoured", ("ramachandran", "percent_favoured"), "%", 2, "high"),
    ("Ramachandran outliers", ("ramachandran", "percent_outliers"), "%", 2, "low"),
    ("Rotamer outliers", ("rotamers", "percent_outliers"), "%", 2, "low"),
    ("C-beta deviations >= 0.25 Å", ("cbeta", "n_outliers"), "", 0, "low"),
    ("Clashscore", ("clashes", "clashscore"), "", 2, "low"),
    ("Bond r.m.s.d.", ("geometry", "bonds", "rmsd"), "Å", 4, "low"),
    ("Angle r.m.s.d.", ("geometry", "angles", "rmsd"), "°", 3, "low"),
    ("CC_mask", ("map_fit", "cc_mask"), "", 4, "high"),
    ("CC_box", ("map_fit", "cc_box"), "", 4, "high"),
    ("FSC-average (model, to d)", ("fsc", "fsc_average_model"), "", 4, "high"),
    ("d at FSC(model, map) = 0.5", ("fsc", "d_fsc05_model"), "Å", 2, "low"),
    ("FSC-average (model, half 1)", ("fsc", "fsc_average_half1"), "", 4, "high"),
    ("FSC-average (model, half 2)", ("fsc", "fsc_average_half2"), "", 4, "high"),
    ("d at FSC(half maps) = 0.143", ("fsc", "d_fsc0143_half"), "Å", 2, "low"),
)


def _lookup(report: dict, path: tuple[str, ...]):
    value = report
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if isinstance(value, float) and not math.isfinite(value) else value


def summary_rows(before: dict, after: dict) -> list[dict[str, object]]:
    """One dict per metric present in either report: label, unit, before, after."""
    rows = []
    for label, path, unit, digits, better in ROWS:
        b, a = _lookup(before, path), _lookup(after, path)
        if b is None and a is None:
            continue
        rows.append({"metric": label, "unit": unit, "before": b, "after": a, "digits": digits,
                     "better": better})
    return rows


def format_summary_table(rows: list[dict[str, object]]) -> str:
    """The rows as an aligned text table."""
    def cell(value, digits) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    width = max(len(f"{r['metric']} ({r['unit']})" if r["unit"] else r["metric"]) for r in rows)
    lines = [f"{'':<{width}}  {'start':>10}  {'final':>10}"]
    for r in rows:
        label = f"{r['metric']} ({r['unit']})" if r["unit"] else r["metric"]
        lines.append(f"{label:<{width}}  {cell(r['before'], r['digits']):>10}  "
                     f"{cell(r['after'], r['digits']):>10}")
    return "\n".join(lines)
