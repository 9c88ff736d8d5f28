"""Threads within one process: model-density kernels, weight-search segments, target terms.

The kernels that sum atoms on a grid (the model map, its coordinate and B gradients) release
the GIL, so one refinement can spread them over a machine's cores with plain threads.
Gradients are gathers (each atom writes only its own row): each thread takes a contiguous range
of atoms. The model map is a scatter: each thread fills its own slab of z planes with every
atom that reaches into it, so every grid point sums the same atoms in the same order whatever
the number of threads, and no thread needs a grid of its own (private grids, summed afterwards,
cost a grid-sized zeroing and addition per call and page-faulted in every thread at once).

The number of threads is a process-wide setting: ``VARREF_THREADS`` if set, else the cores
this process may run on; :func:`set_threads` changes it (``varref refine --threads``). Dask
workers set it to 1 (``varref.ensemble.cluster.one_thread``), as their parallelism is over
members. Every kernel computes each number exactly as one thread would, so results do not
depend on the thread count. Sections nest: inside one of varref's pool threads everything runs
serially (:func:`available`), so the machine is not oversubscribed beyond one spare thread.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

__all__ = ["threads", "set_threads", "configured_threads", "available", "atom_parts",
           "slab_parts", "concurrently", "run_parts", "run_chunks", "map_threads", "beside",
           "scratch_grid", "MIN_ATOMS_PER_THREAD"]

#: Fewer atoms than this per thread are not worth a thread hand-off (~50 us; an atom's
#: sphere costs ~5 us at 3 Å on a d/3 grid).
MIN_ATOMS_PER_THREAD = 200

_threads: int | None = None
_threads_set = False  # _threads came from set_threads (else from the default, cached)
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_lock = threading.Lock()
_local = threading.local()  # .worker: one of varref's pool threads; .grids: scratch_grid


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


def _mark_worker() -> None:
    _local.worker = True


def available() -> int:
    """Threads a parallel section may use here: :func:`threads`, or 1 inside one of varref's
    own worker threads (nested sections run serially, so the machine is never oversubscribed
    and no pool thread waits on work queued behind itself)."""
    return 1 if getattr(_local, "worker", False) else threads()


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
    """Set the threads of this process's model-density kernels, weight search and terms.

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
            # a larger pool replaces a smaller one (after set_threads); the old one is not shut
            # down, a section may still be submitting to it, and its idle threads end with it
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="varref-kernel",
                                       initializer=_mark_worker)
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
    wanted = available() if n_parts is None else int(n_parts)
    n_parts = max(1, min(wanted, n_atoms // MIN_ATOMS_PER_THREAD))
    if n_parts == 1:
        return [(0, n_atoms)]
    cost = np.cumsum(np.asarray(radius, dtype=np.float64) ** 3)
    if not cost[-1] > 0:
        return [(0, n_atoms)]
    cuts = np.searchsorted(cost, cost[-1] * np.arange(1, n_parts) / n_parts)
    edges = [0, *(int(c) for c in cuts), n_atoms]
    return [(lo, hi) for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo]


def concurrently(*calls: Callable[[], object]) -> list[object]:
    """Run ``calls`` at the same time: the first in this thread, the others in the pool (all
    in this thread when :func:`available` is 1). Returns their results in order; every call
    runs to its end before the first exception is raised."""
    if len(calls) == 1 or available() == 1:
        return [call() for call in calls]
    # one spare pool thread beyond the calls: a section that splits again in this thread
    # (the model map beside the restraints) then never queues behind its sibling calls
    pool = _executor(max(len(calls), threads()))
    futures = [pool.submit(call) for call in calls[1:]]
    try:
        first = calls[0]()
    finally:
        errors = [future.exception() for future in futures]
    for error in errors:
        if error is not None:
            raise error
    return [first, *(future.result() for future in futures)]


def run_parts(work: Callable[[int, int, int], None], parts: list[tuple[int, int]]) -> None:
    """``work(start, stop, j)`` for every part ``j`` (:func:`concurrently`)."""
    concurrently(*(lambda lo=lo, hi=hi, j=j: work(lo, hi, j) for j, (lo, hi) in enumerate(parts)))


def run_chunks(work: Callable[[int, int, int], None], chunks: list[tuple[int, int]]) -> None:
    """``work(start, stop, j)`` for every chunk ``j``, on up to :func:`available` threads
    that each take the next chunk when done with one (more chunks than threads balance
    uneven or interrupted threads; the chunks, not the threads, fix what each call computes).
    """
    runners = min(available(), len(chunks))
    if runners <= 1:
        for j, (lo, hi) in enumerate(chunks):
            work(lo, hi, j)
        return
    taken = itertools.count()  # next() on a count is atomic under the GIL

    def runner() -> None:
        while (j := next(taken)) < len(chunks):
            work(chunks[j][0], chunks[j][1], j)

    concurrently(*(runner for _ in range(runners)))


def map_threads(function: Callable[[object], object], items: list) -> list[object]:
    """``[function(item) for item in items]`` on up to :func:`available` threads (results in
    order); the threads run nested parallel sections serially."""
    n_threads = min(available(), len(items))
    if n_threads <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(n_threads, thread_name_prefix="varref-map",
                            initializer=_mark_worker) as pool:
        return list(pool.map(function, items))


class _Inline:
    """An executor that runs each call at once in this thread (:func:`beside` on one thread)."""

    @staticmethod
    def submit(function: Callable, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(function(*args, **kwargs))
        except BaseException as error:  # handed to the caller by future.result()
            future.set_exception(error)
        return future


@contextlib.contextmanager
def beside() -> Iterator[ThreadPoolExecutor | _Inline]:
    """An executor for work that runs beside this thread's, e.g. the reports on a refinement's
    start while it refines: one of varref's worker threads (its own parallel sections run
    serially, so it takes the core this thread's Python leaves idle and the machine is not
    oversubscribed), or this thread itself when :func:`available` is 1. Leaving the block
    waits for the work; its results and errors come from the futures."""
    if available() == 1:
        yield _Inline()
        return
    with ThreadPoolExecutor(1, thread_name_prefix="varref-beside",
                            initializer=_mark_worker) as pool:
        yield pool


def slab_parts(z: np.ndarray, radius: np.ndarray, origin_z: float, voxel_z: float, nz: int,
               n_parts: int | None = None) -> list[tuple[int, int]]:
    """Slabs of grid planes ``[first, stop)`` along z of about equal cost, for a scatter.

    An atom costs ~radius^3, spread over the planes its sphere spans; the cuts split the
    summed cost of the planes evenly.

    Parameters
    ----------
    z : (N,) float64
        Atom z coordinates, Å.
    radius : (N,) float64
        Summation radii, Å.
    origin_z, voxel_z : float
        z of plane 0 and the plane spacing, Å.
    nz : int
        Planes of the grid.
    n_parts : int, optional
        Slabs wanted (default :func:`available`); fewer when the atoms or planes are few.

    Returns
    -------
    list of (first, stop), covering 0..nz in order.
    """
    wanted = available() if n_parts is None else int(n_parts)
    n_parts = max(1, min(wanted, len(radius) // MIN_ATOMS_PER_THREAD, nz))
    if n_parts == 1:
        return [(0, nz)]
    z = np.asarray(z, dtype=np.float64)
    radius = np.asarray(radius, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        keep = np.isfinite(z) & (radius > 0)
        z, radius = z[keep], radius[keep]
        lo = np.clip(np.ceil((z - radius - origin_z) / voxel_z), 0, nz).astype(np.int64)
        hi = np.clip(np.floor((z + radius - origin_z) / voxel_z) + 1, 0, nz).astype(np.int64)
    spans = hi > lo
    lo, hi, radius = lo[spans], hi[spans], radius[spans]
    per_plane = radius ** 3 / (hi - lo)
    change = np.zeros(nz + 1)
    np.add.at(change, lo, per_plane)
    np.add.at(change, hi, -per_plane)
    cost = np.cumsum(np.cumsum(change)[:nz])
    if not cost[-1] > 0:
        return [(0, nz)]
    cuts = np.searchsorted(cost, cost[-1] * np.arange(1, n_parts) / n_parts) + 1
    edges = [0, *(int(c) for c in np.minimum(cuts, nz)), nz]
    return [(first, stop) for first, stop in zip(edges[:-1], edges[1:]) if stop > first]


def scratch_grid(shape: tuple[int, ...], dtype, key: str) -> np.ndarray:
    """A grid kept per calling thread and ``key`` and handed out again on the next call with
    the same shape and dtype (contents undefined). Targets evaluated hundreds of times reuse
    one model-map buffer: a fresh ``np.zeros`` grid of tens of MB is page-faulted on every
    evaluation, and with threads the faults serialise on the process's memory map."""
    grids = getattr(_local, "grids", None)
    if grids is None:
        grids = _local.grids = {}
    grid = grids.get(key)
    if grid is None or grid.shape != tuple(shape) or grid.dtype != np.dtype(dtype):
        grid = grids[key] = np.empty(shape, dtype=dtype)
    return grid
