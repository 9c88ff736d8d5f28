"""A run's results store: created, or resumed only by the run that made it.

What determines a member's result is recorded in the store's attributes when it is created
(:func:`run_parameters_of`): content hashes of the model, the map(s), the restraints and a
reference model, every refinement option, the run's own parameters (members, perturbation,
mode, ...), the data weight and the varref version. ``--resume`` compares them all and
refuses the first that differs (:func:`check_resume`), then re-checks the members the store
says are finished and re-runs any that are not complete (:func:`open_or_create`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from os import PathLike
from pathlib import Path

from varref import __version__
from varref.ensemble.fingerprint import content_sha256, model_sha256
from varref.ensemble.results import ResultStore, decode_parameters, encode_parameters
from varref.ensemble.store_lock import StoreLock
from varref.errors import InputError
from varref.model import Model
from varref.refinement.options import RefineOptions
from varref.restraints import Restraints

log = logging.getLogger(__name__)

#: Recorded for the reader, not compared: file names (the content is compared by hash, so a
#: moved or renamed input resumes).
INFORMATIONAL = frozenset({"model", "map", "sources"})

_LABELS = {"model_sha256": "model content", "map_sha256": "map content",
           "maps_sha256": "map series content", "version": "varref version",
           "restraints_sha256": "restraints (monomer library, --restraints files)",
           "reference_model_sha256": "reference model content",
           "n_models": "--members", "perturb_rmsd": "--perturb-rmsd", "mode": "--mode",
           "reference_frame": "--reference-frame", "models_per_map": "--members",
           "n_frames": "number of maps", "kind": "kind of run", "weight": "--weight"}


def run_parameters_of(model: Model, options: RefineOptions, restraints: Restraints | None = None,
                      **extra) -> dict[str, object]:
    """What determines a run's results, recorded in its store and compared on resume.

    The model's content hash, the restraints' content hash (given ``restraints``), every
    refinement option but the weight (recorded separately: it may be searched), a reference
    model's content hash, the varref version and the run's own parameters ``extra``.
    """
    recorded: dict[str, object] = {"model": model.source, "model_sha256": model_sha256(model),
                                   "version": __version__}
    if restraints is not None:
        recorded["restraints_sha256"] = content_sha256(restraints)
    recorded.update({f"option_{key}": value for key, value in options.as_dict().items()
                     if value is not None and key != "weight"})
    if isinstance(options.reference_model, Model):
        recorded["reference_model_sha256"] = model_sha256(options.reference_model)
    recorded.update(extra)
    return recorded


def _label(key: str) -> str:
    if key.startswith("option_"):
        return "--" + key[len("option_"):].replace("_", "-")
    return _LABELS.get(key, key)


def _shown(value: object) -> str:
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12] + "…"  # a content hash: enough to tell two apart
    return "unset" if value is None else repr(value)


def check_resume(store: ResultStore, parameters: Mapping[str, object],
                 weight: float | None = None) -> None:
    """Refuse to resume ``store`` unless ``parameters`` (and ``weight``, if given) are the
    recorded ones.

    Raises
    ------
    InputError
        One line naming the first differing item (sorted by key), the store's and this run's
        values.
    """
    recorded = store.parameters
    current = decode_parameters(encode_parameters(parameters))  # tuples → lists, as stored
    for key in sorted((set(current) | set(recorded)) - INFORMATIONAL - {"weight"}):
        if recorded.get(key) != current.get(key):
            raise InputError(store.path or "store", f"--resume: {_label(key)} differs from the "
                             f"store's ({key} {_shown(recorded.get(key))} in the store, "
                             f"{_shown(current.get(key))} in this run); use the same inputs "
                             "and options, or another --output")
    if weight is not None and float(weight) != recorded.get("weight"):
        raise InputError(store.path or "store", f"--resume: --weight differs from the store's "
                         f"(weight {recorded.get('weight')!r} in the store, {float(weight)!r} "
                         "in this run)")


def is_store(output: str | PathLike | None) -> bool:
    """True if ``output`` is an existing results store (to be locked before it is touched)."""
    from varref.ensemble.results import _is_results_store

    return output is not None and Path(output).is_dir() and _is_results_store(Path(output))


def open_or_create(output: str | PathLike | None, resume: bool, lock: StoreLock | None,
                   parameters: dict[str, object], weight: float | None,
                   search_weight: Callable[[], float],
                   create: Callable[[dict[str, object], StoreLock | None], ResultStore]
                   ) -> tuple[ResultStore, float]:
    """The run's store and weight: the existing store when resuming, else a new one.

    Resuming checks the parameters (:func:`check_resume`), deletes zarr's temporary files
    left by a killed writer and clears the ``finished`` flag of every flagged member whose
    coordinates are missing or not finite (logged), so the run refines them again. A new
    store records ``parameters`` plus the weight (given, else ``search_weight()``).
    """
    if resume and output is not None and Path(output).exists():
        store = ResultStore.open(output)
        check_resume(store, parameters, weight)
        leftovers = store.remove_partial_files()
        if leftovers:
            log.info("resume: removed %d temporary chunk file(s) of the interrupted run", leftovers)
        damaged = store.incomplete_members()
        if damaged:
            cells = ", ".join(f"frame {f} member {m}" for f, m in damaged)
            log.warning("resume: %d member(s) flagged finished have missing or non-finite "
                        "coordinates and are refined again: %s", len(damaged), cells)
            store.clear_finished(damaged)
        return store, float(store.parameters["weight"])
    if weight is None:
        weight = search_weight()
    parameters = dict(parameters, weight=float(weight))
    return create(parameters, lock), float(weight)
