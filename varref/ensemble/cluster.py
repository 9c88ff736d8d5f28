"""Where the work runs: an existing Dask scheduler, or a LocalCluster started here.

The local default is one worker process per core with one thread each (processes avoid the
GIL entirely), varref's own kernel threads and NUMBA/OpenMP/BLAS threads pinned to 1
so workers never oversubscribe the machine, and glibc malloc thresholds that keep numpy
temporaries off mmap (see :data:`WORKER_MALLOC_ENV`). Every worker loads the compiled numba
kernels once, before the first task (``warm_up``). ``--scheduler tcp://HOST:PORT`` uses a
cluster started elsewhere (dask-jobqueue on SLURM/PBS, Kubernetes; see docs/distributed.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
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


def warm_up() -> str:
    """Compile or load the engine kernels in this process (a tiny refinement problem), and
    keep the model-density kernels on one thread (``varref.engine.parallel``), also on
    workers of a cluster started elsewhere."""
    import numpy as np

    from varref.engine.map_target import map_target_value_gradient_batched
    from varref.engine.restraint_target import pack_restraints, restraint_values_and_gradients_batch
    from varref.engine.synthetic import random_restraints

    from varref.engine.parallel import set_threads

    set_threads(1)  # a worker's parallelism is over members (and its Dask threads)
    coordinates, restraints = random_restraints(n_atoms=12, seed=0)
    packed = pack_restraints(restraints)
    xyz = coordinates[np.newaxis]
    restraint_values_and_gradients_batch(xyz, packed, packed.batch_neighbour_list().update(xyz))
    grid = np.zeros((8, 8, 8), np.float32)
    map_target_value_gradient_batched(grid, np.zeros(3), np.ones(3), xyz)
    return "ready"


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
        with dask.config.set({f"distributed.nanny.pre-spawn-environ.{key}": value
                              for key, value in WORKER_MALLOC_ENV.items()}):
            cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                   dashboard_address=":0", env=WORKER_ENV,
                                   silence_logs=logging.ERROR)
        client = Client(cluster)
    try:
        if not quiet:
            log.info("dask: %d worker(s); dashboard %s", len(client.scheduler_info()["workers"]),
                     client.dashboard_link)
        client.run(warm_up)
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
