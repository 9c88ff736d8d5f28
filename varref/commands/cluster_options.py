"""Options of the commands that run on Dask."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
from collections.abc import Iterator

from varref.commands.option_types import count


def add_cluster_options(parser: argparse.ArgumentParser, batches: bool = True) -> None:
    """``--scheduler``, ``--workers`` and, with ``batches``, ``--batch-size`` and ``--resume``."""
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="use an existing Dask scheduler, e.g. tcp://host:8786 "
                        "(default: start a LocalCluster here)")
    parser.add_argument("--workers", type=count, metavar="N",
                        help="local worker processes (default: one per core)")
    if not batches:
        return
    parser.add_argument("--batch-size", type=count, default=10, metavar="N",
                        help="members refined together in one task (default 10)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run: skip members already in the output store")


@contextlib.contextmanager
def cluster_client(scheduler: str | None, workers: int | None) -> Iterator[object]:
    """:func:`varref.ensemble.cluster.dask_client`, with local worker processes that ignore
    Ctrl-C.

    A Ctrl-C in a terminal goes to the whole process group: without this, every worker
    process prints its own KeyboardInterrupt traceback. Workers started while SIGINT is
    ignored inherit that (Python installs its KeyboardInterrupt handler only when SIGINT is
    at its default), so only this process sees the interrupt and shuts them down.
    """
    from varref.ensemble.cluster import dask_client

    with contextlib.ExitStack() as stack:
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
        try:
            client = stack.enter_context(dask_client(scheduler, workers))
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        yield client
