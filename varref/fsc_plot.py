"""PNG plot of FSC curves (matplotlib, non-interactive Agg backend)."""

from __future__ import annotations

from os import PathLike

import numpy as np
import xarray as xr

from varref.atomic import atomic_path

# drawing order and style of the curves model_map_fsc / fsc may hold
_STYLE = {
    "fsc": dict(color="black", lw=1.6),
    "fsc_model": dict(color="black", lw=1.8),
    "fsc_model_half1": dict(color="tab:red", lw=1.4),
    "fsc_model_half2": dict(color="tab:blue", lw=1.4),
    "fsc_half": dict(color="tab:green", lw=1.4),
    "fsc_full_estimate": dict(color="tab:green", lw=1.0, ls="--"),
    "fsc_ref": dict(color="tab:grey", lw=1.0, ls=":"),
}


def _inverse(x):
    # s = 1/d and d = 1/s; guard s = 0 for the secondary axis' transforms
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(np.abs(x) > 1e-6, 1.0 / np.where(x == 0, 1.0, x), 1e6)


def plot_fsc(dataset: xr.Dataset, path: str | PathLike, title: str | None = None) -> None:
    """FSC against 1/d (bottom axis, Å⁻¹) with the resolution in Å on the top axis, a legend,
    the 0.5 (model–map) and 0.143 (half-map) thresholds, and the refinement resolution when
    the dataset records one.

    Examples
    --------
    >>> from varref.fsc import fsc, model_map_fsc
    >>> plot_fsc(model_map_fsc(model, None, density, 3.0), "fsc.png")   # doctest: +SKIP
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from varref.fsc import CURVE_LABELS, HALF_MAP_THRESHOLD, MODEL_MAP_THRESHOLD

    s = np.asarray(dataset["s"], dtype=np.float64)
    figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    drawn = 0
    for name, style in _STYLE.items():
        if name in dataset:
            axes.plot(s, np.asarray(dataset[name], dtype=np.float64), label=CURVE_LABELS[name], **style)
            drawn += 1
    if drawn == 0:
        plt.close(figure)
        raise ValueError("the dataset holds no FSC curve")
    axes.axhline(MODEL_MAP_THRESHOLD, color="tab:orange", lw=0.8, ls="--", label="FSC = 0.5")
    axes.axhline(HALF_MAP_THRESHOLD, color="tab:purple", lw=0.8, ls="--", label="FSC = 0.143")
    axes.axhline(0.0, color="0.6", lw=0.6)
    resolution = dataset.attrs.get("resolution")
    if resolution is not None and np.isfinite(resolution) and resolution > 0:
        axes.axvline(1.0 / resolution, color="0.4", lw=0.8, ls=":", label=f"d = {resolution:g} Å")
    axes.set_xlim(0.0, s[-1] + 0.5 * (s[1] - s[0] if s.size > 1 else s[0]))
    axes.set_ylim(-0.15, 1.05)
    axes.set_xlabel("spatial frequency 1/d (Å⁻¹)")
    axes.set_ylabel("Fourier shell correlation")
    top = axes.secondary_xaxis("top", functions=(_inverse, _inverse))
    top.set_xlabel("resolution d (Å)")
    ticks = [d for d in (20, 10, 8, 6, 5, 4, 3.5, 3, 2.5, 2, 1.5, 1)
             if 1.0 / d <= axes.get_xlim()[1]]
    top.set_xticks(ticks)
    top.set_xticklabels([f"{d:g}" for d in ticks])
    axes.legend(fontsize=7, loc="lower left", framealpha=0.9)
    axes.grid(alpha=0.25)
    if title:
        axes.set_title(title, fontsize=10)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)
