"""The ``varref`` command line: one sub-command per module in :mod:`varref.commands`.

Errors in the user's input (:class:`varref.errors.InputError`) print one line
``varref: error: FILE: problem`` on stderr and exit with status 2, the same status argparse
uses for bad options. Output files are written atomically, so a failed run leaves none.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from varref import __version__
from varref.commands import COMMANDS
from varref.errors import InputError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="varref",
        description="Real-space refinement of atomic models against cryo-EM maps: "
        "one model, ensembles, or map series.",
    )
    parser.add_argument("--version", action="version", version=f"varref {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debugging detail")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        sub = subparsers.add_parser(
            command.NAME, help=command.HELP, description=command.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s", stream=sys.stderr,
    )
    try:
        return int(args.run(args) or 0)
    except InputError as exc:
        print(f"varref: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("varref: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
