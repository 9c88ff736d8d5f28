"""Threads for the model-density kernels (and the weight search) within one process.

The kernels that sum atoms on a grid (the model map, its coordinate and B gradients) release
the GIL, so one refinement can spread them over a machine's cores with plain threads: each
thread takes a contiguous range of atoms. Gradients are gathers (each atom writes only its own
row), so the ranges need nothing more; the model map is a scatter, so every thread but the
caller's adds its atoms to a private grid that is summed into the output afterwards. Those
private grids are kept per calling thread and reused: a fresh ``np.zeros`` grid per call would
page-fault in every thread at once, and the faults serialise on the process's memory map
(measured: no gain at all with fresh buffers, 1.85x on 2 cores with reused ones).

The number of threads is a process-wide setting: ``VARREF_THREADS`` if set, else the cores
this process may run on; :func:`set_threads` changes it (``varref refine --threads``). Dask
workers set it to 1 (``varref.ensemble.cluster.warm_up``), as their parallelism is over
members. Results depend on the thread count only through the order of floating-point sums
(the atom ranges and the order the private grids are added are fixed), so a run is
reproducible for a given count.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["threads", "set_threads", "configured_threads", "atom_parts", "run_parts", "scratch_grid",
           "MIN_ATOMS_PER_THREAD"]

#: Fewer atoms than this per thread are not worth a thread hand-off (~50 us; an atom's
#: sphere costs ~5 us at 3 Å on a d/3 grid).
MIN_ATOMS_PER_THREAD = 200

_threads: int | None = None
_threads_set = False  # _threads came from set_threads (else from the default, cached)
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_lock = threading.Lock()
_local = threading.local()


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _parse_threads(value: object, source: str) -> int:
    try:
        count = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ValueError(f"{source} must be a positive integer, got {value!r}") from None
    if count < 1:
        raise ValueError(f"{source} must be a positive integer, got {value!r}")
    return count


def threads() -> int:
    """Threads the model-density kernels use in this process."""
    global _threads
    if _threads is None:
        value = os.environ.get("VARREF_THREADS", "").strip()
        _threads = _parse_threads(value, "VARREF_THREADS") if value else _available_cores()
    return _threads


def configured_threads() -> int | None:
    """The count given to :func:`set_threads` (None: the default applies)."""
    return _threads if _threads_set else None


def set_threads(count: int | None) -> None:
    """Set the threads of this process's model-density kernels and weight search.

    Parameters
    ----------
    count : int or None
        Threads (>= 1); None goes back to the default: ``$VARREF_THREADS``, else every core
        this process may run on.

    Examples
    --------
    >>> import varref
    >>> varref.set_threads(1)     # e.g. when running several refinements side by side
    >>> varref.set_threads(None)
    """
    global _threads, _threads_set
    _threads = None if count is None else _parse_threads(count, "threads")
    _threads_set = count is not None


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < workers:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="varref-kernel")
            _pool_size = workers
        return _pool


def _forget_pool() -> None:  # a forked child has the pool object but not its threads
    global _pool, _pool_size
    _pool, _pool_size = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def atom_parts(radius: np.ndarray, n_parts: int | None = None) -> list[tuple[int, int]]:
    """Contiguous atom ranges of about equal cost (an atom's sphere costs ~radius^3).

    Parameters
    ----------
    radius : (N,) float64
        Summation radius per atom (0: skipped by the kernels, costs nothing).
    n_parts : int, optional
        Ranges wanted (default :func:`threads`); fewer when the atoms are few.

    Returns
    -------
    list of (start, stop), covering 0..N in order.
    """
    n_atoms = len(radius)
    wanted = threads() if n_parts is None else int(n_parts)
    n_parts = max(1, min(wanted, n_atoms // MIN_ATOMS_PER_THREAD))
    if n_parts == 1:
        return [(0, n_atoms)]
    cost = np.cumsum(np.asarray(radius, dtype=np.float64) ** 3)
    if not cost[-1] > 0:
        return [(0, n_atoms)]
    cuts = np.searchsorted(cost, cost[-1] * np.arange(1, n_parts) / n_parts)
    edges = [0, *(int(c) for c in cuts), n_atoms]
    return [(lo, hi) for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo]


def run_parts(work: Callable[[int, int, int], None], parts: list[tuple[int, int]]) -> None:
    """``work(start, stop, j)`` for every part ``j``: part 0 in this thread, the rest in the pool.

    Every part runs to its end before this returns; the first exception is raised.
    """
    if len(parts) == 1:
        work(*parts[0], 0)
        return
    pool = _executor(len(parts) - 1)
    futures = [pool.submit(work, lo, hi, j) for j, (lo, hi) in enumerate(parts) if j > 0]
    try:
        work(*parts[0], 0)
    finally:
        errors = [future.exception() for future in futures]
    for error in errors:
        if error is not None:
            raise error


def scratch_grid(shape: tuple[int, ...], dtype: np.dtype, slot: int) -> np.ndarray:
    """A reusable grid of this calling thread (contents undefined; the user zeroes it).

    One grid per slot is kept; a different shape or dtype replaces it.
    """
    grids = getattr(_local, "grids", None)
    if grids is None:
        grids = _local.grids = {}
    grid = grids.get(slot)
    if grid is None or grid.shape != tuple(shape) or grid.dtype != dtype:
        grid = grids[slot] = np.empty(shape, dtype=dtype)
    return grid
