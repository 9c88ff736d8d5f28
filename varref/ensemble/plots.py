"""PNG plots of ensemble and series results (matplotlib, non-interactive Agg backend)."""

from __future__ import annotations

from os import PathLike

import numpy as np

from varref.atomic import atomic_path


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_residue_spread(residue_number: np.ndarray, residue_chain: np.ndarray,
                        residue_rmsf: np.ndarray, path: str | PathLike, title: str) -> None:
    """Per-residue RMSF along the sequence, one line per chain."""
    plt = _figure()
    figure, axes = plt.subplots(figsize=(9, 3.2), dpi=120)
    for chain in dict.fromkeys(residue_chain.tolist()):
        on_chain = residue_chain == chain
        axes.plot(residue_number[on_chain], residue_rmsf[on_chain], lw=1.2, label=f"chain {chain}")
    axes.set_xlabel("residue number")
    axes.set_ylabel("RMSF (Å)")
    axes.set_title(title)
    if len(set(residue_chain.tolist())) > 1:
        axes.legend(fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)


def plot_series_cc(frames: np.ndarray, cc_best: np.ndarray, path: str | PathLike, title: str) -> None:
    """CC_mask of the best member per frame."""
    plt = _figure()
    figure, axes = plt.subplots(figsize=(6, 3.2), dpi=120)
    axes.plot(frames, cc_best, "o-", lw=1.2)
    axes.set_xlabel("frame")
    axes.set_ylabel("CC_mask")
    axes.set_title(title)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)


def plot_series_displacement(frames: np.ndarray, residue_number: np.ndarray,
                             displacement: np.ndarray, path: str | PathLike, title: str) -> None:
    """Per-residue displacement from the reference frame (residue × frame image)."""
    plt = _figure()
    figure, axes = plt.subplots(figsize=(7, 3.6), dpi=120)
    image = axes.imshow(displacement.T, aspect="auto", origin="lower", cmap="viridis",
                        extent=(frames[0] - 0.5, frames[-1] + 0.5, 0, displacement.shape[1]))
    axes.set_xlabel("frame")
    axes.set_ylabel("residue (index)")
    axes.set_title(title)
    figure.colorbar(image, ax=axes, label="displacement (Å)")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)
