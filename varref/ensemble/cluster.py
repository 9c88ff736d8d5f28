"""Where the work runs: an existing Dask scheduler, or a LocalCluster started here.

The local default is one worker process per core with one thread each (processes avoid the
GIL entirely), varref's own kernel threads and NUMBA/OpenMP/BLAS threads pinned to 1
so workers never oversubscribe the machine, and glibc malloc thresholds that keep numpy
temporaries off mmap (see :data:`WORKER_MALLOC_ENV`). Every worker imports varref and loads
the compiled numba kernels once, in the background while the client prepares the run
(``warm_up``). ``--scheduler tcp://HOST:PORT`` uses a
cluster started elsewhere (dask-jobqueue on SLURM/PBS, Kubernetes; see docs/distributed.md).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import uuid
import weakref
from collections.abc import Iterator

log = logging.getLogger(__name__)

#: Thread settings of worker processes (applied inside each worker when it starts, before any
#: numba/BLAS import): one thread per worker for every runtime.
WORKER_ENV = {"VARREF_THREADS": "1", "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
              "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

#: glibc malloc thresholds, which malloc reads at process start, so they go through dask's
#: ``distributed.nanny.pre-spawn-environ`` (the nanny sets them before spawning; for a
#: LocalCluster that also writes them into this process's environment, harmless for malloc
#: settings and the reason the thread settings above do not go this way). distributed's own
#: MALLOC_TRIM_THRESHOLD_=65536 switches off glibc's dynamic mmap threshold, so every numpy
#: temporary above 128 KB (the L-BFGS works on K x 3N arrays) becomes an mmap/munmap with
#: fresh page faults: measured here, allocating array arithmetic ran 17x and a refinement
#: task 3.5x slower in a worker than in a plain process. With these values allocations below
#: 64 MB come from the heap and up to 256 MB of free heap is kept.
WORKER_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(64 * 2**20),
                     "MALLOC_TRIM_THRESHOLD_": str(256 * 2**20)}


#: Dask settings of a LocalCluster started here: its periodic housekeeping made rarer. With
#: distributed's defaults every process wakes up every 10-100 ms (each worker samples its
#: threads' stacks for the dashboard's profile every 10 ms, taking the GIL; the event loops
#: tick every 20 ms; nannies read their worker's memory every 100 ms; system monitors every
#: 500 ms): measured here, an idle 2-worker cluster used 1.1 s of CPU per 20 s in this process
#: and 0.8 s in each worker (0.27 and 0.1 s with these), time a busy cluster takes from the
#: refinements on a machine with no spare core. Without the profiler the dashboard's profile
#: page stays empty; a worker over its memory limit is stopped within 0.5 s instead of 0.1 s.
LOCAL_CLUSTER_CONFIG = {"distributed.worker.profile.enabled": False,
                        "distributed.admin.tick.interval": "500ms",
                        "distributed.admin.system-monitor.interval": "2s",
                        "distributed.worker.memory.monitor-interval": "500ms"}


def one_thread() -> str:
    """Keep this process's model-density kernels, weight search and terms on one thread
    (``varref.engine.parallel``): a worker's parallelism is over members and its Dask
    threads, also on workers of a cluster started elsewhere."""
    from varref.engine.parallel import set_threads

    set_threads(1)
    return "one thread"


def warm_up() -> str:
    """Import everything a refinement task needs and load its compiled kernels: a refinement
    of a 4-residue helix into its own 4 Å map through every stage (B factors and final CC
    stage included). ~1 s per worker (imports ~0.7 s, numba's cached kernels ~0.4 s) that
    the first task would otherwise pay; :func:`dask_client` runs it in the background while
    the client prepares the run (weight search, result store)."""
    one_thread()
    from varref.example_data import example_helix
    from varref.refinement.options import RefineOptions
    from varref.refinement.pipeline import refine_coordinates
    from varref.restraints import build_restraints
    from varref.simulate import simulate_map

    importlib.import_module("varref.ensemble.tasks")  # the task code and what it imports

    model = example_helix(4)
    density = simulate_map(model, 4.0).prepared(model.xyz, 5.0, None)
    options = RefineOptions(resolution=4.0, weight=1.0, macro_cycles=1, iterations=2,
                            final_cc_iterations=2, adp_iterations=2, rotamer_fit=False)
    refine_coordinates(model, density, build_restraints(model), model.xyz, options)
    return "ready"


#: The background warm-up tasks of each client made by :func:`dask_client`.
_warming: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def warm_up_futures(client) -> list:
    """The warm-up tasks :func:`dask_client` started on ``client``'s workers (one each)."""
    return list(_warming.get(client, []))


def _check_warm_up(client) -> None:
    """Raise a failed warm-up (not swallowed: the run's tasks would have failed too); cancel
    one that never ran (its worker was lost: it is pinned there, and would wait forever)."""
    for future in warm_up_futures(client):
        if future.status == "error":
            future.result()
        elif not future.done():
            future.cancel()


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None,
                quiet: bool = False) -> Iterator["distributed.Client"]:  # noqa: F821
    """A connected ``distributed.Client``; a LocalCluster is started (and stopped) if needed."""
    from distributed import Client, LocalCluster

    # distributed logs every connection at INFO; the user wants varref's progress, not that
    for name in ("distributed", "tornado", "bokeh"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if scheduler:
        client = Client(scheduler)
        cluster = None
    else:
        import dask

        n_workers = workers or os.cpu_count() or 1
        # servers read these when they start (the workers get this process's config)
        with dask.config.set({**LOCAL_CLUSTER_CONFIG,
                              **{f"distributed.nanny.pre-spawn-environ.{key}": value
                                 for key, value in WORKER_MALLOC_ENV.items()}}):
            cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                   dashboard_address=":0", env=WORKER_ENV,
                                   silence_logs=logging.ERROR)
            client = Client(cluster)
    try:
        if not quiet:
            log.info("dask: %d worker(s); dashboard %s", len(client.scheduler_info()["workers"]),
                     client.dashboard_link)
        # thread settings first, on every worker, before any task can start
        client.run(one_thread)
        # then every worker imports varref and loads its kernels in the background while
        # this process prepares the run (weight search, result store): a task submitted
        # meanwhile queues behind its worker's warm-up
        run = uuid.uuid4().hex
        _warming[client] = [client.submit(warm_up, workers=[address], allow_other_workers=False,
                                          pure=False, key=f"warm-up-{k}-{run}")
                            for k, address in enumerate(client.scheduler_info()["workers"])]
        yield client
        _check_warm_up(client)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
