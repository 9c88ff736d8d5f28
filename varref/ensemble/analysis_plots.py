"""PNG plots of a series analysis (:func:`varref.ensemble.analysis.analyse`).

Every residue axis is labelled with chain and number (``A/52``), every value axis with units.
"""

from __future__ import annotations

from os import PathLike

import numpy as np
import xarray as xr

from varref.atomic import atomic_path
from varref.ensemble.plots import _figure

#: Plot names, in the order :func:`plot_analysis` takes the paths.
PLOTS = ("pca.png", "modes.png", "domains.png")


def _residue_ticks(axes, labels: np.ndarray, max_ticks: int = 16) -> None:
    step = max(1, int(np.ceil(len(labels) / max_ticks)))
    ticks = np.arange(0, len(labels), step)
    axes.set_xticks(ticks)
    axes.set_xticklabels([str(labels[t]) for t in ticks], rotation=60, ha="right", fontsize=7)
    axes.set_xlabel("residue (chain/number)")


def _save(plt, figure, path: str | PathLike) -> None:
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)


def plot_pca(analysis: xr.Dataset, path: str | PathLike) -> None:
    """Explained variance per component and each frame's projection on PC1 and PC2."""
    plt = _figure()
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=120)
    pcs = analysis["pc"].values
    left.bar(pcs, 100.0 * analysis["explained_variance_ratio"].values)
    left.set_xlabel("principal component")
    left.set_ylabel("variance explained (%)")
    left.set_xticks(pcs)
    frames = analysis["frame"].values
    for k in pcs[:2]:
        r = analysis["frame_order_correlation"].sel(pc=k).values
        text = ", ".join(f"{v:+.2f}" for v in np.atleast_1d(r) if np.isfinite(v)) or "n/a"
        right.plot(frames, analysis["projection"].sel(pc=k).values, "o-", lw=1.2,
                   label=f"PC{k} (r with frame order {text})")
    right.set_xlabel("frame")
    right.set_ylabel("projection (Å)")
    right.legend(fontsize=7)
    figure.suptitle(f"principal motions ({analysis.attrs.get('n_samples', '?')} samples, "
                    f"superposed on {analysis.attrs.get('superposed_on', '?')})", fontsize=9)
    _save(plt, figure, path)


def plot_modes(analysis: xr.Dataset, path: str | PathLike, n_modes: int = 3) -> None:
    """Per-residue displacement along the first components (one standard deviation)."""
    plt = _figure()
    figure, axes = plt.subplots(figsize=(9, 3.6), dpi=120)
    labels = analysis["residue_label"].values
    x = np.arange(len(labels))
    for k in analysis["pc"].values[:n_modes]:
        ratio = float(analysis["explained_variance_ratio"].sel(pc=k))
        axes.plot(x, analysis["residue_mode_displacement"].sel(pc=k).values, lw=1.2,
                  label=f"PC{k} ({100 * ratio:.0f} %)")
    _residue_ticks(axes, labels)
    axes.set_ylabel("displacement per s.d. (Å)")
    axes.legend(fontsize=8)
    axes.set_title("per-residue displacement along each principal component")
    _save(plt, figure, path)


def plot_domains(analysis: xr.Dataset, path: str | PathLike) -> None:
    """Displacement from the reference frame (frame × residue), domains and hinges below."""
    plt = _figure()
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 4.6), dpi=120, sharex=True,
                                         gridspec_kw={"height_ratios": [4, 1]})
    labels = analysis["residue_label"].values
    frames = analysis["frame"].values
    displacement = analysis["residue_displacement"].values
    image = top.imshow(displacement, aspect="auto", origin="lower", cmap="viridis",
                       extent=(-0.5, len(labels) - 0.5, frames[0] - 0.5, frames[-1] + 0.5),
                       interpolation="nearest")
    top.set_ylabel("frame")
    top.set_title(f"displacement from frame {analysis.attrs.get('reference_frame')}, rigid "
                  f"domains and hinges")
    figure.colorbar(image, ax=[top, bottom], label="displacement (Å)")
    domain = analysis["domain"].values.astype(float)
    shown = np.ma.masked_less(domain, 0)[np.newaxis]
    bottom.imshow(shown, aspect="auto", cmap="tab10", vmin=0, vmax=9,
                  extent=(-0.5, len(labels) - 0.5, 0, 1), interpolation="nearest")
    for index in np.flatnonzero(analysis["hinge"].values):
        bottom.axvline(index, color="black", lw=0.8)
    bottom.set_yticks([])
    bottom.set_ylabel("domain", fontsize=8)
    _residue_ticks(bottom, labels)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", bbox_inches="tight")  # colorbar spans both panels
    plt.close(figure)


def plot_analysis(analysis: xr.Dataset, paths: tuple[str | PathLike, str | PathLike, str | PathLike]
                  ) -> None:
    """All three plots (:data:`PLOTS`): PCA, per-residue modes, domains."""
    plot_pca(analysis, paths[0])
    plot_modes(analysis, paths[1])
    plot_domains(analysis, paths[2])
