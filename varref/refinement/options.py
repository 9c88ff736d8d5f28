"""Every parameter of a refinement, shared by refine, ensembles, series and pixel scans."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from varref.errors import InputError


@dataclass
class RefineOptions:
    """Parameters of the refinement pipeline; defaults follow phenix.real_space_refine.

    Attributes
    ----------
    resolution : float
        Map resolution, Å (model maps, masks, resolution-dependent defaults).
    macro_cycles : int
        L-BFGS minimisations with the atom-centred map target (default 5).
    iterations : int
        L-BFGS iterations per macro-cycle (default 100).
    weight : float or None
        Data weight w; None searches it (segment trials, Afonine et al. 2018 §2.2.3).
    rigid_body : bool
        Rigid-body fit of the whole model before the macro-cycles.
    seed : int
        Seeds every random choice (segments of the weight search; perturbations).
    map_b : float or None
        B (Å²) applied to the map before refinement: > 0 blurs, < 0 sharpens.
    box_margin : float
        Margin (Å) of the map box around the model (at least 5).
    bond_rmsd_target, angle_rmsd_target : float
        Geometry the weight search aims at (0.01 Å, 1.0°).
    interpolation : {"tricubic", "trilinear"}
    max_step : float
        Largest coordinate change of one L-BFGS step, Å.
    final_cc : bool
        Finish with a short density-correlation stage (kept only if CC_mask rises with
        geometry within the targets).
    final_cc_iterations : int
    adp : bool
        Refine isotropic B-factors (after the macro-cycles, before the final stage), as
        Phenix does in its last macro-cycle (docs/methods-adp.md).
    adp_mode : {"auto", "atom", "group"}
        Per-atom B, one B per residue, or automatic (group B at resolution worse than 4 Å).
    adp_iterations : int
    hydrogens : {"riding", "restrained", "add"}
        The model's hydrogens ride on their parent atoms (default; positions computed, only
        their non-bonded repulsion acts, docs/methods-refinement.md), are refined as atoms
        under their restraints, or are (re)built from the monomer library first and then
        ride (``add``: far fewer clashes, slightly looser fit). A model without hydrogens is
        refined without them unless ``add``.
    ramachandran, ramachandran_weight, cbeta, rotamer, rotamer_sigma, rotamer_fit,
    secondary_structure, reference_model,
    reference_sigma, reference_limit, ncs, ncs_sigma, ncs_limit
        Switches of the restraint terms (see docs/methods-restraints.md);
        ``secondary_structure=None`` means automatic by resolution.
    """

    resolution: float
    macro_cycles: int = 5
    iterations: int = 100
    weight: float | None = None
    rigid_body: bool = False
    seed: int = 0
    map_b: float | None = None
    box_margin: float = 5.0
    bond_rmsd_target: float = 0.01
    angle_rmsd_target: float = 1.0
    interpolation: str = "tricubic"
    max_step: float = 0.5
    final_cc: bool = True
    final_cc_iterations: int = 30
    adp: bool = True
    adp_mode: str = "auto"
    adp_iterations: int = 30
    hydrogens: str = "riding"
    ramachandran: bool = True
    ramachandran_weight: float | None = None
    cbeta: bool = True
    rotamer: bool = True
    rotamer_sigma: float = 10.0
    rotamer_fit: bool = True
    secondary_structure: bool | None = None
    reference_model: object = None
    reference_sigma: float = 1.0
    reference_limit: float = 15.0
    ncs: bool = True
    ncs_sigma: float = 2.5
    ncs_limit: float = 15.0

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise :class:`InputError` naming the option when a value is out of range."""
        def finite(name: str, value, low: float | None = None, high: float | None = None,
                   positive: bool = False) -> None:
            if value is None:
                return
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InputError(_flag(name), f"must be a finite number, got {value!r}")
            if positive and value <= 0:
                raise InputError(_flag(name), f"must be > 0, got {value!r}")
            if (low is not None and value < low) or (high is not None and value > high):
                raise InputError(_flag(name), f"must be in {low:g}..{high:g}, got {value!r}")

        finite("resolution", self.resolution, 0.5, 30.0)
        finite("weight", self.weight, positive=True)
        finite("map_b", self.map_b, -1000.0, 1000.0)
        finite("box_margin", self.box_margin, 0.0, 100.0)
        finite("bond_rmsd_target", self.bond_rmsd_target, positive=True)
        finite("angle_rmsd_target", self.angle_rmsd_target, positive=True)
        finite("max_step", self.max_step, positive=True)
        finite("ramachandran_weight", self.ramachandran_weight, positive=True)
        finite("reference_sigma", self.reference_sigma, positive=True)
        finite("reference_limit", self.reference_limit, positive=True)
        finite("ncs_sigma", self.ncs_sigma, positive=True)
        finite("rotamer_sigma", self.rotamer_sigma, positive=True)
        finite("ncs_limit", self.ncs_limit, positive=True)
        if self.adp_mode not in ("auto", "atom", "group"):
            raise InputError("--adp-mode", f"must be auto, atom or group, got {self.adp_mode!r}")
        for name in ("macro_cycles", "iterations", "final_cc_iterations", "adp_iterations"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InputError(_flag(name), f"must be an integer >= 1, got {value!r}")
        if self.interpolation not in ("tricubic", "trilinear"):
            raise InputError("--interpolation", "must be tricubic or trilinear")
        if self.hydrogens not in ("riding", "restrained", "add"):
            raise InputError("--hydrogens",
                             f"must be riding, restrained or add, got {self.hydrogens!r}")

    def as_dict(self) -> dict[str, object]:
        """The options as plain values (a reference model given as an object is named)."""
        result = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and not isinstance(value, (bool, int, float, str)):
                value = getattr(value, "source", type(value).__name__)
            result[f.name] = value
        return result


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")
