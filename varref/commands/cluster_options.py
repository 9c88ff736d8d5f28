"""Options of the commands that run on Dask."""

from __future__ import annotations

import argparse


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="use an existing Dask scheduler, e.g. tcp://host:8786 "
                        "(default: start a LocalCluster here)")
    parser.add_argument("--workers", type=int, help="local worker processes (default: one per core)")
    parser.add_argument("--batch-size", type=int, default=10,
                        help="members refined together in one task (default 10)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run: skip members already in the output store")
