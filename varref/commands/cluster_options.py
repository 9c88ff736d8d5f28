"""Options of the commands that run on Dask."""

from __future__ import annotations

import argparse

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
