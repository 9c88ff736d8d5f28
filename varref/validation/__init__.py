"""Model validation: MolProbity-style geometry checks and map-model fit.

Modules, one job each: :mod:`.tables` (Top8000 grids), :mod:`.residues` (per-residue atom
lookup, dihedrals), :mod:`.ramachandran`, :mod:`.rotamers`, :mod:`.coot_fallback`,
:mod:`.cbeta` (C-beta deviation, cis/twisted peptides), :mod:`.clashes`,
:mod:`.mapfit` (correlations, EMRinger), :mod:`.report` (:func:`validate`,
:func:`format_summary`) and :mod:`.plots` (Ramachandran PNG). Bond and angle deviations
come from :func:`varref.engine.geometry_stats.geometry_statistics`.
Definitions, thresholds and references: ``docs/methods-validation.md``.
"""

from varref.validation.report import (PER_RESIDUE_COLUMNS, TopologyCache, format_summary,
                                     json_ready, validate)

__all__ = ["PER_RESIDUE_COLUMNS", "TopologyCache", "format_summary", "json_ready", "validate"]
