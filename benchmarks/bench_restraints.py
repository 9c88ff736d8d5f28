"""Timing of the restraint engine (value + gradient) on real models.

Run: ``python benchmarks/bench_restraints.py`` from the repository root (needs ../shared).
Prints per-evaluation times for one model (single thread), the neighbour-list build and
the batched path against K calls of the single path.
"""

from __future__ import annotations

import time
from pathlib import Path

import gemmi
import numpy as np

from varref.engine.neighbours import build_nonbonded_pairs
from varref.engine.restraint_target import (
    pack_restraints,
    restraint_value_and_gradient,
    restraint_values_and_gradients_batch,
)
from varref.model import Model, read_model
from varref.restraints import build_restraints

MODELS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "models"


def best_of(func, repeats: int = 7, number: int = 5) -> float:
    """Best mean time (s) of ``number`` calls over ``repeats`` rounds."""
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            func()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


def chain_prefix(path: Path, chain: str, max_atoms: int) -> Model:
    """The leading residues of one chain, as many as fit in ``max_atoms`` atoms."""
    st = gemmi.read_structure(str(path))
    st.setup_entities()
    for name in [ch.name for ch in st[0] if ch.name != chain]:
        st[0].remove_chain(name)
    residues = st[0][chain]
    while residues.count_atom_sites() > max_atoms:
        del residues[len(residues) - 1]
    return Model.from_structure(st, source=f"{path.name}:{chain}")


def report(model: Model, label: str) -> None:
    restraints = build_restraints(model)
    packed = pack_restraints(restraints)
    xyz = np.ascontiguousarray(model.xyz)
    nbl = packed.neighbour_list()
    pairs = nbl.update(xyz)
    restraint_value_and_gradient(xyz, packed, pairs)  # compile / load cache
    grad = np.zeros_like(xyz)
    t_eval = best_of(lambda: restraint_value_and_gradient(xyz, packed, pairs, grad=grad))
    t_build = best_of(lambda: build_nonbonded_pairs(xyz, packed.nonbonded,
                                                    packed.nonbonded_settings), number=2)
    n = model.n_atoms
    print(f"{label}: {n} atoms, {restraints.counts()}, {len(pairs)} listed pairs")
    print(f"  value+gradient {t_eval * 1e3:.3f} ms  ({t_eval / n * 1e9:.0f} ns/atom)"
          f"; pair-list build {t_build * 1e3:.2f} ms")


def batch_report(model: Model, n_models: int = 100) -> None:
    packed = pack_restraints(build_restraints(model))
    rng = np.random.default_rng(0)
    batch = model.xyz[None] + rng.normal(scale=0.3, size=(n_models,) + model.xyz.shape)
    batch = np.ascontiguousarray(batch)
    bnl = packed.batch_neighbour_list()
    batch_pairs = bnl.update(batch)
    singles = [batch_pairs.model(k) for k in range(n_models)]
    grad = np.zeros_like(batch)
    restraint_values_and_gradients_batch(batch, packed, batch_pairs, grad=grad)
    restraint_values_and_gradients_batch(batch, packed, batch_pairs, parallel=True)

    def loop():
        for k in range(n_models):
            restraint_value_and_gradient(batch[k], packed, singles[k])

    t_loop = best_of(loop, repeats=3, number=1)
    t_batch = best_of(lambda: restraint_values_and_gradients_batch(
        batch, packed, batch_pairs, grad=grad), repeats=3, number=1)
    t_par = best_of(lambda: restraint_values_and_gradients_batch(
        batch, packed, batch_pairs, grad=grad, parallel=True), repeats=3, number=1)
    t_build = best_of(lambda: packed.batch_neighbour_list().update(batch), repeats=2, number=1)
    print(f"batch K={n_models} x {model.n_atoms} atoms: loop of single calls "
          f"{t_loop * 1e3:.1f} ms, batched {t_batch * 1e3:.1f} ms "
          f"(x{t_loop / t_batch:.2f}), batched prange {t_par * 1e3:.1f} ms "
          f"(x{t_loop / t_par:.2f}); all K pair lists built in {t_build * 1e3:.0f} ms")


def main() -> None:
    small = chain_prefix(MODELS / "6out.pdb", "A", 2500)
    large = read_model(MODELS / "6out.pdb")
    report(small, "6out chain A, leading residues")
    report(large, "6out")
    batch_report(small)


if __name__ == "__main__":
    main()
