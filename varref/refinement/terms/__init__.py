"""Terms of the refinement objective and the registry that the pipeline builds them from.

``T_k = w_k · Σ data terms + Σ restraint terms`` (see :mod:`varref.refinement.terms.base`).
Data terms belong to a stage: the macro-cycles use the atom-centred map value, the final
stage the density correlation. Restraint terms are built once and apply to every stage and
to the segment trials of the weight search.

Adding a term: write ``varref/refinement/terms/<name>.py`` with a class following
:class:`~varref.refinement.terms.base.Term` and ``build(setup) -> Term | None``, then add
one :class:`TermSpec` line to :data:`REGISTRY` (and, if it has a switch, a field of
:class:`~varref.refinement.options.RefineOptions`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from varref.refinement.terms import (
    cbeta,
    density_correlation,
    geometry,
    map_value,
    ncs,
    ramachandran,
    reference,
    rotamer,
    secondary_structure,
)
from varref.refinement.terms.base import DATA, RESTRAINT, Term, TermSetup

#: Stage names of data terms.
MACRO, FINAL = "macro", "final"


@dataclass(frozen=True)
class TermSpec:
    """A registered term: its name, kind, the stage it serves (data terms only) and builder."""

    name: str
    kind: str
    build: Callable[[TermSetup], Term | None]
    stage: str | None = None


REGISTRY: list[TermSpec] = [
    TermSpec("map_value", DATA, map_value.build, MACRO),
    TermSpec("density_correlation", DATA, density_correlation.build, FINAL),
    TermSpec("geometry", RESTRAINT, geometry.build),
    TermSpec("ramachandran", RESTRAINT, ramachandran.build),
    TermSpec("cbeta", RESTRAINT, cbeta.build),
    TermSpec("rotamer", RESTRAINT, rotamer.build),
    TermSpec("secondary_structure", RESTRAINT, secondary_structure.build),
    TermSpec("reference", RESTRAINT, reference.build),
    TermSpec("ncs", RESTRAINT, ncs.build),
]


def build_restraint_terms(setup: TermSetup) -> list[Term]:
    """Every registered restraint term that is switched on and has something to restrain."""
    return [term for spec in REGISTRY if spec.kind == RESTRAINT
            if (term := spec.build(setup)) is not None]


def build_data_terms(setup: TermSetup, stage: str) -> list[Term]:
    """The data terms of ``stage`` (built from ``setup.start``, e.g. the fixed CC mask)."""
    return [term for spec in REGISTRY if spec.kind == DATA and spec.stage == stage
            if (term := spec.build(setup)) is not None]


__all__ = ["DATA", "FINAL", "MACRO", "REGISTRY", "RESTRAINT", "Term", "TermSetup", "TermSpec",
           "build_data_terms", "build_restraint_terms"]
