"""Analyse a refined series: principal motions, rigid domains and hinges.

Frames (best member each, or every member with --members all) are superposed on the reference
frame's best member (Cα or heavy atoms); PCA of the coordinates gives the principal motions
(variance explained, projection per frame and its correlation with frame order, per-residue
displacement along each component); residues whose mutual distances stay constant over the
frames form rigid domains, and the residues between two domains along a chain are hinges.
Writes an xarray/zarr store (ANALYSIS.zarr) and three plots. Method: docs/methods-ensembles.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from varref.atomic import check_output_path, check_outputs
from varref.commands.option_types import count, index, positive_float
from varref.commands.options import (add_json_option, add_overwrite_option, add_plots_option,
                                     json_output, plot_paths, write_json)
from varref.errors import InputError

NAME = "analyse"
HELP = "principal motions, rigid domains and hinges of a refined series"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", help="results store written by varref series")
    parser.add_argument("-o", "--output", metavar="ANALYSIS.zarr",
                        help="analysis store (default: STORE without .zarr + _analysis.zarr)")
    parser.add_argument("--reference-frame", type=index, metavar="K",
                        help="frame to superpose on and measure from (default: the run's)")
    parser.add_argument("--members", choices=("best", "all"), default="best",
                        help="samples: the best member per frame, or every finished member")
    parser.add_argument("--superpose", choices=("ca", "heavy"), default="ca",
                        help="atoms superposed on the reference frame (default ca)")
    parser.add_argument("--components", type=count, default=5, metavar="N",
                        help="principal components kept (default 5)")
    parser.add_argument("--domain-cutoff", type=positive_float, default=5.0, metavar="DEG",
                        help="degrees: residues whose local rotations differ less (r.m.s. over frames) "
                        "form one rigid domain (average linkage; default 5)")
    parser.add_argument("--window", type=count, default=2, metavar="N",
                        help="residues either side of a residue in its neighbourhood, whose "
                        "rotation is compared (default 2)")
    parser.add_argument("--min-domain-size", type=count, default=5, metavar="N",
                        help="residues in the smallest domain (default 5)")
    add_plots_option(parser, "pca.png, PREFIX_modes.png and PREFIX_domains.png",
                     "OUTPUT without .zarr")
    add_json_option(parser, "the summary")
    add_overwrite_option(parser)


def run(args: argparse.Namespace) -> int:
    from varref.ensemble.analysis import analyse, domain_segments, write_analysis
    from varref.ensemble.analysis_plots import PLOTS, plot_analysis
    from varref.ensemble.results import ResultStore

    store_path = Path(args.store)
    output = Path(args.output) if args.output else store_path.with_name(
        store_path.name.removesuffix(".zarr") + "_analysis.zarr")
    check_output_path(output, (store_path,), "--output", store=True)
    if output.exists() and not args.overwrite:
        raise InputError("--output", f"{output} exists; use --overwrite to replace it")
    if output.exists() and not (output / ".zattrs").exists():
        raise InputError("--output", f"{output} exists and is not an analysis store; refusing "
                         "to replace it")
    plots = plot_paths(args.plots or str(output.with_suffix("")), *PLOTS)
    check_outputs([*((plot, "--plots") for plot in plots), (json_output(args.json), "--json")],
                  (store_path, output), overwrite=args.overwrite)
    dataset = ResultStore.open(store_path).dataset()
    analysis = analyse(dataset, reference_frame=args.reference_frame, members=args.members,
                       superpose_on=args.superpose, n_components=args.components,
                       domain_cutoff=args.domain_cutoff, min_domain_residues=args.min_domain_size,
                       window=args.window)
    write_analysis(analysis, output)
    plot_analysis(analysis, tuple(plots))
    summary = summarise(analysis, domain_segments(analysis))
    for line in summary["lines"]:
        print(line)
    print(f"wrote {output}, {', '.join(map(str, plots))}")
    write_json(args.json, {k: v for k, v in summary.items() if k != "lines"})
    return 0


def summarise(analysis, segments: dict[int, list[str]]) -> dict[str, object]:
    """Text lines and JSON fields of an analysis."""
    ratio = analysis["explained_variance_ratio"].values
    correlation = analysis["frame_order_correlation"].values
    lines = [f"{analysis.attrs['n_samples']} samples superposed on frame "
             f"{analysis.attrs['reference_frame']} ({analysis.attrs['superposed_on']} atoms)"]
    for k, pc in enumerate(analysis["pc"].values):
        r = ", ".join(f"{v:+.2f}" for v in correlation[:, k] if np.isfinite(v)) or "n/a"
        top = analysis["residue_mode_displacement"].sel(pc=pc)
        peak = str(analysis["residue_label"].values[int(np.nanargmax(top.values))])
        lines.append(f"PC{pc}: {100 * ratio[k]:5.1f} % of the variance; r with frame order {r}; "
                     f"largest at {peak} ({float(top.max()):.2f} Å per s.d.)")
    for number, ranges in segments.items():
        lines.append(f"domain {number + 1}: {', '.join(ranges)}")
    hinges = list(analysis.attrs["hinge_residues"])
    lines.append(f"hinge residues: {', '.join(hinges) if hinges else 'none'}")
    return {"lines": lines, "explained_variance_ratio": ratio.tolist(),
            "frame_order_correlation": {str(c): [None if not np.isfinite(v) else float(v) for v in row]
                                        for c, row in zip(analysis["component"].values, correlation)},
            "domains": {str(n + 1): r for n, r in segments.items()}, "hinge_residues": hinges,
            "reference_frame": int(analysis.attrs["reference_frame"])}
