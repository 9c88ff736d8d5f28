"""Geometry restraints: flat arrays (:mod:`.arrays`) built from the monomer library (:mod:`.builder`)."""

from varref.restraints.arrays import (
    AngleRestraints,
    BondRestraints,
    ChiralRestraints,
    NonbondedParameters,
    PlaneRestraints,
    Restraints,
    TorsionRestraints,
)
from varref.restraints.builder import build_restraints

__all__ = [
    "AngleRestraints",
    "BondRestraints",
    "ChiralRestraints",
    "NonbondedParameters",
    "PlaneRestraints",
    "Restraints",
    "TorsionRestraints",
    "build_restraints",
]
