"""Smooth, physically plausible perturbations of a model (``varref perturb``).

White noise on every atom destroys the covalent geometry and is undone by the restraints
alone; real model errors are correlated over whole secondary-structure elements. We displace
atoms by a random smooth field

    u(x) = sum_j a_j cos(k_j · x + phi_j),   |k_j| = 2 pi / lambda_j,  lambda_j in [L, 2L]

(default L = 15 Å, 24 modes, Gaussian 3-vectors a_j, uniform phases), remove its mean (no
net translation), scale it to the requested Cα r.m.s. displacement, and regularise the
geometry by minimising the restraints alone. Regularisation shrinks the displacement a
little; the *regularised* displacement is then rescaled to the target and polished until the
Cα r.m.s.d. to the input is within 2 % of the target (rescaling an already regular, smooth
displacement by a few per cent barely strains the geometry, so the polish converges fast).
Two schedules (:data:`REGULARISATION`):

* ``"full"`` (``varref perturb``, :func:`perturb`): 200 iterations, polish 40 per round —
  1 Å TRPV1 starts end at bond/angle r.m.s.d. 0.0009 Å / 0.57°.
* ``"to_targets"`` (ensemble and series members): 60 iterations, polish 30 per round also
  while the heavy-atom bond and angle r.m.s.d. exceed the refinement's targets (0.01 Å,
  1.0°); 2.5× cheaper (the perturbation was a third of an ensemble member's time), 0.0014 Å /
  0.92°, and 20 TRPV1 members refined from such starts with the ensemble's fixed weight end
  0.150 Å from the truth instead of 0.162 Å.

``varref perturb`` keeps the full schedule so that its starts (and the benchmarks built on
them) stay what they were. When a refinement *searches* its weight, the start's geometry
used to matter: from a 0.9° start of two 6out chains the first weight search floored to
w = 1 and the refinement ended 0.158 instead of 0.088 Å from the truth; since the search
interpolates the crossing of its targets it finds the same weight from either start
(docs/methods-refinement.md, *Automatic weight*). Reproducible from the
seed.
"""

from __future__ import annotations

import numpy as np

from varref.engine.geometry_stats import geometry_statistics
from varref.model import Model
from varref.refinement.lbfgs import minimise_lbfgs
from varref.refinement.objective import Objective
from varref.refinement.terms.geometry import GeometryTerm
from varref.restraints.arrays import Restraints

#: Heavy-atom bond (Å) and angle (°) r.m.s.d. at which a perturbed start counts as regular
#: (the refinement's default targets).
GEOMETRY_TARGETS = (0.01, 1.0)


def smooth_field(xyz: np.ndarray, rng: np.random.Generator, wavelength: float = 15.0,
                 n_modes: int = 24) -> np.ndarray:
    """A random smooth displacement field evaluated at ``xyz`` (N, 3), mean removed."""
    directions = rng.normal(size=(n_modes, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    wavelengths = rng.uniform(wavelength, 2.0 * wavelength, size=n_modes)
    k = directions * (2.0 * np.pi / wavelengths)[:, None]
    amplitude = rng.normal(size=(n_modes, 3))
    phase = rng.uniform(0.0, 2.0 * np.pi, size=n_modes)
    field = np.cos(xyz @ k.T + phase) @ amplitude
    return field - field.mean(axis=0)


def calpha_rmsd(model: Model, a: np.ndarray, b: np.ndarray) -> float:
    """Cα r.m.s. distance between two coordinate sets of ``model`` (all atoms if no Cα)."""
    selection = (model.atom_name == "CA") & (model.element == "C")
    if not selection.any():
        selection = ~model.is_hydrogen
    return float(np.sqrt(np.mean(np.sum((a[selection] - b[selection]) ** 2, axis=1))))


def regularise(restraints: Restraints, xyz: np.ndarray, iterations: int = 200) -> np.ndarray:
    """Minimise the restraints alone from ``xyz`` (N, 3) or a batch (K, N, 3); no map."""
    batch = np.asarray(xyz, dtype=np.float64)
    single = batch.ndim == 2
    if single:
        batch = batch[np.newaxis]
    target = Objective([GeometryTerm(restraints)], np.zeros(len(batch)), batch)
    result = minimise_lbfgs(target, target.pack(batch), max_iterations=iterations, max_step=0.5)
    regularised = target.unpack(result.x, np.arange(len(batch)))
    return regularised[0] if single else regularised


def is_regular(restraints: Restraints, batch: np.ndarray,
               targets: tuple[float, float] = GEOMETRY_TARGETS) -> np.ndarray:
    """(K,) bool: heavy-atom bond and angle r.m.s.d. of each coordinate set within
    ``targets`` (Å, °), as :func:`~varref.engine.geometry_stats.geometry_statistics`
    reports them."""
    regular = np.ones(len(batch), dtype=bool)
    for k, x in enumerate(batch):
        statistics = geometry_statistics(x, restraints)
        regular[k] = (statistics["bonds"]["rmsd"] <= targets[0]
                      and statistics["angles"]["rmsd"] <= targets[1])
    return regular


#: Regularisation schedules of :func:`perturb_batch`: first minimisation, polish per round,
#: rounds, and whether a set must also reach :data:`GEOMETRY_TARGETS` to leave.
REGULARISATION = {
    "full": dict(iterations=200, polish_iterations=40, max_rounds=4, to_targets=False),
    "to_targets": dict(iterations=60, polish_iterations=30, max_rounds=6, to_targets=True),
}


def perturb_batch(model: Model, restraints: Restraints, rmsd: float, seeds: list[int],
                  start: np.ndarray | None = None, wavelength: float = 15.0, n_modes: int = 24,
                  regularisation: str = "full") -> np.ndarray:
    """K perturbations (one per seed) of ``start`` (default ``model.xyz``), regularised together.

    ``regularisation`` (:data:`REGULARISATION`): ``"full"`` minimises the restraints for 200
    iterations, then rescales and polishes (40) while a set is more than 2 % off ``rmsd``;
    ``"to_targets"`` (ensemble and series members) minimises 60 iterations and polishes (30)
    while a set is off ``rmsd`` or outside :data:`GEOMETRY_TARGETS` (module docstring).

    Returns (K, N, 3) coordinates whose Cα r.m.s.d. to ``start`` is within 2 % of ``rmsd``
    (or as close as the rounds of rescaling got).
    """
    if rmsd < 0:
        raise ValueError("rmsd must be >= 0")
    if regularisation not in REGULARISATION:
        raise ValueError(f"regularisation must be one of {', '.join(REGULARISATION)}")
    schedule = REGULARISATION[regularisation]
    base = model.xyz if start is None else np.asarray(start, dtype=np.float64)
    if rmsd == 0:
        return np.repeat(base[np.newaxis], len(seeds), axis=0)
    fields = np.array([smooth_field(base, np.random.default_rng(seed), wavelength, n_modes)
                       for seed in seeds])
    scale = np.array([rmsd / calpha_rmsd(model, base + field, base) for field in fields])
    result = regularise(restraints, base + scale[:, None, None] * fields,
                        iterations=schedule["iterations"])
    for _ in range(schedule["max_rounds"]):
        achieved = np.array([calpha_rmsd(model, x, base) for x in result])
        off = np.abs(achieved - rmsd) > 0.02 * rmsd
        if schedule["to_targets"]:
            off |= ~is_regular(restraints, result)
        pending = np.flatnonzero(off)
        if len(pending) == 0:
            break
        # rescale the regularised (already smooth and nearly regular) displacement, then polish
        rescaled = base + (rmsd / achieved[pending])[:, None, None] * (result[pending] - base)
        result[pending] = regularise(restraints, rescaled, iterations=schedule["polish_iterations"])
    return result


def perturb(model: Model, restraints: Restraints, rmsd: float, seed: int = 0,
            wavelength: float = 15.0, n_modes: int = 24, regularisation: str = "full") -> np.ndarray:
    """Coordinates perturbed smoothly to Cα r.m.s.d. ``rmsd`` Å from ``model.xyz``, regularised."""
    return perturb_batch(model, restraints, rmsd, [seed], wavelength=wavelength, n_modes=n_modes,
                         regularisation=regularisation)[0]
