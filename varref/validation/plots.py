"""Ramachandran plots (matplotlib): one panel per MolProbity class.

Each panel shows phi (x) against psi (y), both -180..180 degrees with ticks every 60, the
class's Top8000 favoured region (grid value >= 2 %) and allowed region (>= the class's
allowed threshold, :data:`~varref.validation.ramachandran.ALLOWED_THRESHOLD`) as filled
contours, the residues as points coloured by status (favoured, allowed, outlier), every
outlier named "chain number residue" (up to ``max_labels`` per panel), and a legend.

:func:`ramachandran_figure` returns the :class:`matplotlib.figure.Figure` (tests inspect it
before anything is written); :func:`write_ramachandran_plots` writes one PNG per class with
residues and an overview with all six panels. The figure is built on
:class:`matplotlib.figure.Figure` with the Agg canvas, not pyplot, so no display or global
state is involved (safe in Dask workers and threads).
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from varref.atomic import atomic_path
from varref.validation.ramachandran import (ALLOWED_THRESHOLD, ALLOWED_THRESHOLD_OTHER,
                                            FAVOURED_THRESHOLD, RAMA_CLASSES)
from varref.validation.tables import ALLOWED, FAVOURED, OUTLIER, PercentileTable

#: Panel titles per class.
CLASS_TITLES = {
    "general": "General", "glycine": "Glycine", "cis-proline": "cis-Proline",
    "trans-proline": "trans-Proline", "pre-proline": "pre-Proline",
    "isoleucine-valine": "Ile/Val",
}
FAVOURED_FILL = "#9ecae1"
ALLOWED_FILL = "#deebf7"
STATUS_STYLE = {  # colour, marker size, z-order: outliers drawn last, on top
    FAVOURED: ("#08306b", 9, 3),
    ALLOWED: ("#f28e00", 16, 4),
    OUTLIER: ("#d62728", 28, 5),
}
TICKS = np.arange(-180, 181, 60)
#: Contour sampling: grid values at the centre of every 1-degree cell.
_CENTRES = np.arange(360) - 179.5


def residue_name(row: dict) -> str | None:
    """"chain number residue" of a plot row (``label`` if given); None if unnamed."""
    if all(key in row and row[key] is not None for key in ("chain", "resseq", "resname")):
        icode = str(row.get("icode") or "").strip()
        return f"{row['chain']} {row['resseq']}{icode} {row['resname']}"
    label = row.get("label")
    return str(label) if label else None


def _status(row: dict) -> str | None:
    # rows of ramachandran_analysis say "status", rows of the per-residue table "rama_status"
    return row.get("status", row.get("rama_status"))


def _allowed_threshold(rama_class: str) -> float:
    return ALLOWED_THRESHOLD.get(rama_class, ALLOWED_THRESHOLD_OTHER)


def draw_panel(ax, rows: list[dict], rama_class: str, table: PercentileTable | None,
               max_labels: int = 20) -> None:
    """Draw one class on a matplotlib Axes (contours, points, outlier names, axes).

    Parameters
    ----------
    ax
        The Axes.
    rows
        Residues of this class: ``phi``, ``psi``, ``status`` (or ``rama_status``) and, to
        name outliers, ``chain``/``resseq``/``icode``/``resname`` or ``label``.
    rama_class
        One of :data:`~varref.validation.ramachandran.RAMA_CLASSES`.
    table
        The class's Top8000 grid; None draws no contours.
    max_labels
        Most outlier names written in the panel (the count of the rest is noted).
    """
    allowed = _allowed_threshold(rama_class)
    if table is not None:
        phi_grid, psi_grid = np.meshgrid(_CENTRES, _CENTRES)
        values = table.value_at(np.stack([phi_grid.ravel(), psi_grid.ravel()], axis=1))
        values = values.reshape(phi_grid.shape)
        ax.contourf(phi_grid, psi_grid, values, levels=[allowed, FAVOURED_THRESHOLD, np.inf],
                    colors=[ALLOWED_FILL, FAVOURED_FILL], zorder=0)
        ax.contour(phi_grid, psi_grid, values, levels=[allowed, FAVOURED_THRESHOLD],
                   colors=["#6baed6", "#2171b5"], linewidths=0.6, zorder=1)
    else:
        ax.text(0.5, 0.02, "no Top8000 contours (no reference data)", transform=ax.transAxes,
                ha="center", va="bottom", fontsize=7, color="0.4")
    n_outliers = 0
    for status in (FAVOURED, ALLOWED, OUTLIER):
        members = [row for row in rows if _status(row) == status]
        if not members:
            continue
        colour, size, z = STATUS_STYLE[status]
        ax.scatter([row["phi"] for row in members], [row["psi"] for row in members], s=size,
                   c=colour, edgecolors="black" if status == OUTLIER else "none",
                   linewidths=0.5, zorder=z)
        if status == OUTLIER:
            n_outliers = len(members)
            for row in members[:max_labels]:
                name = residue_name(row)
                if name is not None:
                    ax.annotate(name, (row["phi"], row["psi"]), xytext=(3, 3),
                                textcoords="offset points", fontsize=6, color=colour,
                                zorder=6)
            if n_outliers > max_labels:
                ax.text(0.98, 0.02, f"+{n_outliers - max_labels} more outliers",
                        transform=ax.transAxes, ha="right", va="bottom", fontsize=7,
                        color=STATUS_STYLE[OUTLIER][0])
    ax.set_title(f"{CLASS_TITLES.get(rama_class, rama_class)}: {len(rows)} residues, "
                 f"{n_outliers} outliers", fontsize=9)
    ax.set_xlim(-180, 180)
    ax.set_ylim(-180, 180)
    ax.set_xticks(TICKS)
    ax.set_yticks(TICKS)
    ax.tick_params(labelsize=7)
    ax.set_xlabel("φ (°)")
    ax.set_ylabel("ψ (°)")
    ax.set_aspect("equal")
    ax.axhline(0.0, color="0.6", linewidth=0.5, zorder=1)
    ax.axvline(0.0, color="0.6", linewidth=0.5, zorder=1)
    ax.grid(True, color="0.85", linewidth=0.4, zorder=0)


def _legend_handles(rama_classes: list[str], with_contours: bool) -> list:
    handles = []
    if with_contours:
        handles.append(Patch(facecolor=FAVOURED_FILL, edgecolor="#2171b5",
                             label=f"favoured region (≥ {FAVOURED_THRESHOLD * 100:g} %)"))
        thresholds = sorted({_allowed_threshold(c) for c in rama_classes})
        text = " / ".join(f"{t * 100:g}" for t in thresholds)
        handles.append(Patch(facecolor=ALLOWED_FILL, edgecolor="#6baed6",
                             label=f"allowed region (≥ {text} %)"))
    for status, name in ((FAVOURED, "favoured"), (ALLOWED, "allowed"), (OUTLIER, "outlier")):
        colour, size, _ = STATUS_STYLE[status]
        handles.append(Line2D([], [], linestyle="", marker="o", markersize=np.sqrt(size),
                              markerfacecolor=colour,
                              markeredgecolor="black" if status == OUTLIER else colour,
                              label=name))
    return handles


def ramachandran_figure(rows: list[dict], tables: dict[str, PercentileTable] | None,
                        classes: list[str] | tuple[str, ...] = RAMA_CLASSES,
                        title: str | None = None, max_labels: int = 20) -> Figure:
    """A figure with one Ramachandran panel per class in ``classes``.

    Parameters
    ----------
    rows
        Per-residue rows: ``phi``, ``psi``, ``rama_class``, ``status`` (or ``rama_status``:
        the per-residue table of :func:`varref.validation.validate` can be passed as is)
        and, to name outliers, ``chain``, ``resseq``, ``icode``, ``resname`` (or ``label``).
        Rows without a status (residues not evaluated) are ignored.
    tables
        Top8000 grids per class (:func:`~varref.validation.ramachandran.load_ramachandran_tables`);
        None: no contours.
    classes
        Classes to draw, one panel each, in this order (up to three panels per row).
    title
        Figure title (optional).
    max_labels
        Most outlier names per panel.

    Returns
    -------
    matplotlib.figure.Figure
        With an Agg canvas attached (``fig.savefig`` works without pyplot).
    """
    classes = list(classes)
    evaluated = [row for row in rows if _status(row) in (FAVOURED, ALLOWED, OUTLIER)]
    n_columns = min(3, max(1, len(classes)))
    n_rows = -(-len(classes) // n_columns)
    fig = Figure(figsize=(4.2 * n_columns, 4.3 * n_rows + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_rows, n_columns, squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        if k >= len(classes):
            ax.set_axis_off()
            continue
        rama_class = classes[k]
        members = [row for row in evaluated if row["rama_class"] == rama_class]
        draw_panel(ax, members, rama_class, tables.get(rama_class) if tables else None,
                   max_labels=max_labels)
    fig.legend(handles=_legend_handles(classes, bool(tables)), loc="outside lower center",
               ncol=5 if n_columns >= 3 else 2, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def write_ramachandran_plots(rama_rows: list[dict], tables: dict[str, PercentileTable] | None,
                             directory: str | PathLike, prefix: str = "ramachandran",
                             dpi: int = 150) -> list[Path]:
    """PNG plots: ``<prefix>_<class>.png`` for every class with residues (general always),
    then ``<prefix>_all.png`` with all six panels.

    Parameters
    ----------
    rama_rows
        As for :func:`ramachandran_figure`.
    tables
        The Top8000 grids (None: points without contours).
    directory
        Output directory (created if needed).
    prefix
        File-name prefix.
    dpi
        Resolution of the PNGs.

    Returns
    -------
    The paths written.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    present = {row["rama_class"] for row in rama_rows
               if _status(row) in (FAVOURED, ALLOWED, OUTLIER)}
    classes = [c for c in RAMA_CLASSES if c == "general" or c in present]
    written = []
    for rama_class in classes + ["all"]:
        if rama_class == "all":
            fig = ramachandran_figure(rama_rows, tables, RAMA_CLASSES)
        else:
            fig = ramachandran_figure(rama_rows, tables, [rama_class])
        path = directory / f"{prefix}_{rama_class}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
        written.append(path)
    return written
