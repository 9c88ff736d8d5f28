"""Ramachandran plots: the matplotlib figure (axes, contours, points, names, legend) and PNGs."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.colors import to_hex
from matplotlib.contour import ContourSet

from varref.validation.plots import (ALLOWED_FILL, FAVOURED_FILL, STATUS_STYLE,
                                     ramachandran_figure, write_ramachandran_plots)
from varref.validation.ramachandran import RAMA_CLASSES, ramachandran_analysis
from varref.validation.residues import ResidueTable

ROWS = [
    {"phi": -63.0, "psi": -43.0, "rama_class": "general", "status": "favoured",
     "chain": "A", "resseq": 5, "icode": "", "resname": "ALA"},
    {"phi": -150.0, "psi": 60.0, "rama_class": "general", "status": "allowed",
     "chain": "A", "resseq": 6, "icode": "", "resname": "LEU"},
    {"phi": 120.0, "psi": 120.0, "rama_class": "general", "status": "outlier",
     "chain": "B", "resseq": 17, "icode": "A", "resname": "ASN"},
    {"phi": 80.0, "psi": 10.0, "rama_class": "glycine", "status": "favoured",
     "chain": "A", "resseq": 9, "icode": "", "resname": "GLY"},
    {"phi": -60.0, "psi": 140.0, "rama_class": "cis-proline", "status": "rama_status_ignored",
     "chain": "A", "resseq": 10, "icode": "", "resname": "PRO"},  # no valid status: ignored
]


def panel_texts(ax) -> list[str]:
    return [text.get_text() for text in ax.texts]


def scatter_points(ax) -> dict[str, np.ndarray]:
    """Scatter offsets by face colour (hex)."""
    points = {}
    for collection in ax.collections:
        if (isinstance(collection, PathCollection) and not isinstance(collection, ContourSet)
                and len(collection.get_offsets())):
            colour = to_hex(collection.get_facecolor()[0])
            points[colour] = np.asarray(collection.get_offsets())
    return points


def test_figure_has_one_labelled_panel_per_class(rama_tables):
    fig = ramachandran_figure(ROWS, rama_tables)
    axes = [ax for ax in fig.axes if ax.axison]
    assert len(axes) == len(RAMA_CLASSES)
    titles = [ax.get_title() for ax in axes]
    assert titles[0] == "General: 3 residues, 1 outliers"
    assert titles[1].startswith("Glycine: 1 residues")
    assert titles[2].startswith("cis-Proline: 0 residues")  # the invalid-status row is ignored
    for ax in axes:
        assert ax.get_xlabel() == "φ (°)" and ax.get_ylabel() == "ψ (°)"
        assert list(ax.get_xticks()) == list(range(-180, 181, 60))
        assert list(ax.get_yticks()) == list(range(-180, 181, 60))
        assert ax.get_xlim() == (-180.0, 180.0) and ax.get_ylim() == (-180.0, 180.0)


def test_points_are_coloured_by_status_and_outliers_named(rama_tables):
    fig = ramachandran_figure(ROWS, rama_tables)
    general = fig.axes[0]
    points = scatter_points(general)
    for status, phi_psi in (("favoured", (-63.0, -43.0)), ("allowed", (-150.0, 60.0)),
                            ("outlier", (120.0, 120.0))):
        colour = to_hex(STATUS_STYLE[status][0])
        assert points[colour].tolist() == [list(phi_psi)], status
    # the outlier, and only it, is named chain / number+icode / residue name
    assert panel_texts(general) == ["B 17A ASN"]
    assert panel_texts(fig.axes[1]) == []


def test_contours_of_the_class_are_drawn(rama_tables):
    fig = ramachandran_figure(ROWS, rama_tables, classes=["general", "glycine"])

    def favoured_region(ax):
        (filled,) = [c for c in ax.collections if isinstance(c, ContourSet) and c.filled]
        assert list(filled.levels) == [filled.levels[0], 0.02, np.inf]
        assert [to_hex(f) for f in filled.get_facecolor()] == [to_hex(ALLOWED_FILL),
                                                               to_hex(FAVOURED_FILL)]
        return filled.get_paths()[1]  # the band >= 2 %

    general, glycine = (favoured_region(ax) for ax in fig.axes[:2])
    # each panel has its own class's contours: left-handed helix favoured only for Gly
    assert general.contains_point((-63.0, -43.0)) and glycine.contains_point((-63.0, -43.0))
    assert glycine.contains_point((80.0, 10.0)) and not general.contains_point((80.0, 10.0))


def test_legend_names_regions_and_statuses(rama_tables):
    fig = ramachandran_figure(ROWS, rama_tables)
    (legend,) = fig.legends
    labels = [text.get_text() for text in legend.get_texts()]
    assert labels[:2] == ["favoured region (≥ 2 %)", "allowed region (≥ 0.05 / 0.1 / 0.2 %)"]
    assert labels[2:] == ["favoured", "allowed", "outlier"]


def test_outlier_names_are_capped_with_a_count(rama_tables):
    rows = [{"phi": 120.0 + k, "psi": 120.0, "rama_class": "general", "status": "outlier",
             "chain": "A", "resseq": k, "resname": "ALA"} for k in range(5)]
    fig = ramachandran_figure(rows, rama_tables, classes=["general"], max_labels=3)
    assert panel_texts(fig.axes[0]) == ["A 0 ALA", "A 1 ALA", "A 2 ALA", "+2 more outliers"]


def test_without_reference_data_there_are_no_contours():
    fig = ramachandran_figure(ROWS, None, classes=["general"])
    assert "no Top8000 contours (no reference data)" in panel_texts(fig.axes[0])
    assert not any(isinstance(c, ContourSet) for c in fig.axes[0].collections)
    labels = [text.get_text() for text in fig.legends[0].get_texts()]
    assert labels == ["favoured", "allowed", "outlier"]


def test_png_files_are_written_per_class_and_overview(tmp_path, rama_tables):
    paths = write_ramachandran_plots(ROWS, rama_tables, tmp_path / "plots")
    assert [p.name for p in paths] == ["ramachandran_general.png", "ramachandran_glycine.png",
                                       "ramachandran_all.png"]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 10_000
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(p.name for p in paths)


def test_plot_of_a_deposited_model_names_its_outliers(read_shared_model, rama_tables):
    model = read_shared_model("3j6b_9")
    residues = ResidueTable(model)
    analysis = ramachandran_analysis(residues, rama_tables)
    rows = [dict(row, **residues.identity(row["residue"])) for row in analysis["residues"]]
    fig = ramachandran_figure(rows, rama_tables)
    named = {text for ax in fig.axes for text in panel_texts(ax)}
    expected = {f"{residues.chain[r['residue']]} {residues.number[r['residue']]} "
                f"{residues.name[r['residue']]}" for r in analysis["residues"]
                if r["status"] == "outlier"}
    assert len(expected) == analysis["n_outliers"] > 0
    assert named == expected


@pytest.mark.parametrize("key", ["status", "rama_status"])
def test_rows_of_the_per_residue_table_are_accepted(rama_tables, key):
    rows = [{"phi": 120.0, "psi": 120.0, "rama_class": "general", key: "outlier",
             "chain": "A", "resseq": 3, "icode": None, "resname": "SER"}]
    fig = ramachandran_figure(rows, rama_tables, classes=["general"])
    assert panel_texts(fig.axes[0]) == ["A 3 SER"]
