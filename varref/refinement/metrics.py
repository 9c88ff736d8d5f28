"""Metrics of a refinement: map–model correlations and geometry of one coordinate set."""

from __future__ import annotations

import numpy as np

from varref.engine.geometry_stats import geometry_statistics
from varref.mapfit import correlations
from varref.maps import Map
from varref.model import Model
from varref.restraints import Restraints

#: Every correlation of :func:`varref.mapfit.correlations`.
ALL_CORRELATIONS = ("cc_mask", "cc_box", "cc_volume", "cc_peaks")
#: The ones the per-cycle log shows (CC_volume and CC_peaks sort the whole box).
LOGGED_CORRELATIONS = ("cc_mask", "cc_box")


def model_metrics(model: Model, xyz: np.ndarray, restraints: Restraints, density: Map,
                  resolution: float, which: tuple[str, ...] = ALL_CORRELATIONS,
                  deviations: dict | None = None) -> dict[str, float]:
    """Map–model correlations (``which``; default CC_mask, CC_box, CC_volume, CC_peaks) and
    bond/angle r.m.s.d. of coordinates ``xyz`` (from ``deviations``, the
    :func:`~varref.engine.geometry_stats.geometry_statistics` of ``xyz``, when the caller
    has them already)."""
    metrics = correlations(model, xyz, density, resolution, which=which)
    if deviations is None:
        deviations = geometry_statistics(xyz, restraints)
    metrics["bond_rmsd"] = deviations["bonds"]["rmsd"]
    metrics["angle_rmsd"] = deviations["angles"]["rmsd"]
    return {key: float(value) for key, value in metrics.items()}
