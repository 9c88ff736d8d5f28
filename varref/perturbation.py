"""Smooth, physically plausible perturbations of a model (``varref perturb``).

White noise on every atom destroys the covalent geometry and is undone by the restraints
alone; real model errors are correlated over whole secondary-structure elements. We displace
atoms by a random smooth field

    u(x) = sum_j a_j cos(k_j · x + phi_j),   |k_j| = 2 pi / lambda_j,  lambda_j in [L, 2L]

(default L = 15 Å, 24 modes, Gaussian 3-vectors a_j, uniform phases), remove its mean (no
net translation), scale it to the requested Cα r.m.s. displacement, and regularise the
geometry by minimising the restraints alone (60 L-BFGS iterations). Regularisation shrinks
the displacement a little; the *regularised* displacement is then rescaled to the target and
polished (30 iterations) while the Cα r.m.s.d. to the input is more than 2 % off the target
or the heavy-atom bond and angle r.m.s.d. exceed the refinement targets (0.01 Å, 1.0°: a start
as regular as a refined model). Rescaling an already regular, smooth displacement by a few
per cent barely strains the geometry, so the polish converges fast. Until 2026-11-30 the
regularisation ran a fixed 200 + 40 iterations; stopping at the geometry targets makes 1 Å
TRPV1 starts about 2.5× cheaper (bond/angle r.m.s.d. about 0.0014 Å / 0.9° instead of
0.0009 Å / 0.57°), and 20 members refined from them end 0.150 Å from the truth instead of
0.162 Å (the refinement does the rest of the regularising with the map). Reproducible from
the seed.
"""

from __future__ import annotations

import numpy as np

from varref.engine.angles import angle_values
from varref.engine.bonds import bond_lengths
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
    ``targets`` (Å, °)."""
    heavy = ~np.asarray(restraints.nonbonded.is_hydrogen, dtype=bool)
    bond_use = heavy[restraints.bonds.atoms].all(axis=1)
    angle_use = heavy[restraints.angles.atoms].all(axis=1)
    bonds, bond_ideal = restraints.bonds.atoms[bond_use], restraints.bonds.ideal[bond_use]
    angles, angle_ideal = restraints.angles.atoms[angle_use], restraints.angles.ideal[angle_use]
    regular = np.ones(len(batch), dtype=bool)
    for k, x in enumerate(batch):
        if len(bonds):
            regular[k] &= np.sqrt(np.mean((bond_lengths(x, bonds) - bond_ideal) ** 2)) <= targets[0]
        if len(angles):
            regular[k] &= np.sqrt(np.mean((angle_values(x, angles) - angle_ideal) ** 2)) <= targets[1]
    return regular


def perturb_batch(model: Model, restraints: Restraints, rmsd: float, seeds: list[int],
                  start: np.ndarray | None = None, wavelength: float = 15.0, n_modes: int = 24,
                  max_rounds: int = 6, iterations: int = 60,
                  polish_iterations: int = 30) -> np.ndarray:
    """K perturbations (one per seed) of ``start`` (default ``model.xyz``), regularised together.

    ``iterations`` regularise the raw field; then, while a set is more than 2 % off ``rmsd``
    or outside :data:`GEOMETRY_TARGETS`, it is rescaled and polished for
    ``polish_iterations`` (at most ``max_rounds`` times; module docstring).

    Returns (K, N, 3) coordinates whose Cα r.m.s.d. to ``start`` is within 2 % of ``rmsd``
    (or as close as ``max_rounds`` of rescaling got).
    """
    if rmsd < 0:
        raise ValueError("rmsd must be >= 0")
    base = model.xyz if start is None else np.asarray(start, dtype=np.float64)
    if rmsd == 0:
        return np.repeat(base[np.newaxis], len(seeds), axis=0)
    fields = np.array([smooth_field(base, np.random.default_rng(seed), wavelength, n_modes)
                       for seed in seeds])
    scale = np.array([rmsd / calpha_rmsd(model, base + field, base) for field in fields])
    result = regularise(restraints, base + scale[:, None, None] * fields, iterations=iterations)
    for _ in range(max_rounds):
        achieved = np.array([calpha_rmsd(model, x, base) for x in result])
        pending = np.flatnonzero((np.abs(achieved - rmsd) > 0.02 * rmsd)
                                 | ~is_regular(restraints, result))
        if len(pending) == 0:
            break
        # rescale the regularised (already smooth and nearly regular) displacement, then polish
        rescaled = base + (rmsd / achieved[pending])[:, None, None] * (result[pending] - base)
        result[pending] = regularise(restraints, rescaled, iterations=polish_iterations)
    return result


def perturb(model: Model, restraints: Restraints, rmsd: float, seed: int = 0,
            wavelength: float = 15.0, n_modes: int = 24, max_rounds: int = 6) -> np.ndarray:
    """Coordinates perturbed smoothly to Cα r.m.s.d. ``rmsd`` Å from ``model.xyz``, regularised."""
    return perturb_batch(model, restraints, rmsd, [seed], wavelength=wavelength, n_modes=n_modes,
                         max_rounds=max_rounds)[0]
