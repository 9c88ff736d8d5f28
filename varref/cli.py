"""The ``varref`` command line: one sub-command per module in :mod:`varref.commands`.

Errors in the user's input — a bad option value (argparse) or a bad file
(:class:`varref.errors.InputError`) — print one line ``varref: error: SOURCE: problem`` on
stderr and exit with status 2. Output paths are checked before any computation and outputs
are written atomically, so a failed run leaves none. Ctrl-C prints ``varref: interrupted``
and exits with 130; a closed stdout (``varref info ... | head -1``) ends the run quietly.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

from varref import __version__
from varref.commands import COMMANDS
from varref.commands.option_types import count
from varref.commands.options import JSON_STDOUT
from varref.errors import InputError


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the hand-wrapped descriptions and appends "(default: X)" to every option whose
    help text does not already state its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, [], argparse.SUPPRESS):
            return text
        if action.option_strings or action.nargs in ("?", "*"):
            return text + " (default: %(default)s)"
        return text


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's one-line error: ``varref: error: --option: problem``."""

    def error(self, message: str) -> NoReturn:
        # argparse says "argument --x/-x: problem"; keep only the long option name
        match = re.match(r"argument ([^:]+): (.*)", message, re.S)
        if match:
            name = match.group(1).split("/")[0]
            message = f"{name}: {match.group(2)}"
        line = " ".join(message.split())
        self.exit(2, f"varref: error: {line} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every sub-command (``varref COMMAND --help`` shows each)."""
    parser = ArgumentParser(
        prog="varref", formatter_class=HelpFormatter,
        description="Real-space refinement of atomic models against cryo-EM maps: "
        "one model, ensembles, or map series.",
    )
    parser.add_argument("--version", action="version", version=f"varref {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debugging detail")
    # -v also after the sub-command; SUPPRESS keeps it from resetting a -v given before
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="log debugging detail")
    common.add_argument("--threads", type=count, default=argparse.SUPPRESS, metavar="N",
                        help="threads for the model-density kernels of this process (default "
                        "$VARREF_THREADS, else every core; Dask workers use 1)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        sub = subparsers.add_parser(
            command.NAME, help=command.HELP, description=command.__doc__,
            formatter_class=HelpFormatter, parents=[common],
        )
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def _silence_dask() -> None:
    """Quiet distributed's shutdown: after Ctrl-C its workers and comms log every broken
    connection, which would bury the one line the user needs."""
    for name in ("distributed", "tornado", "bokeh", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``varref`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version, or a bad option (already reported)
        return int(stop.code or 0)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s", stream=sys.stderr,
    )
    previous = _install_interrupt_handler()
    from varref.engine import parallel

    threads_before = parallel.configured_threads()
    try:
        if hasattr(args, "threads"):
            parallel.set_threads(args.threads)
        else:
            try:
                parallel.threads()  # a bad $VARREF_THREADS is an input error, said at once
            except ValueError as exc:
                raise InputError("VARREF_THREADS", str(exc).removeprefix("VARREF_THREADS ")) from None
        if getattr(args, "json", None) == "-":
            # stdout carries only the JSON; the text report goes to stderr meanwhile
            token = JSON_STDOUT.set(sys.stdout)
            try:
                with contextlib.redirect_stdout(sys.stderr):
                    return int(args.run(args) or 0)
            finally:
                JSON_STDOUT.reset(token)
        return int(args.run(args) or 0)
    except InputError as exc:
        print(f"varref: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _silence_dask()
        print("varref: interrupted", file=sys.stderr, flush=True)
        return 130
    except BrokenPipeError:
        _stdout_closed()
        return 141
    finally:
        parallel.set_threads(threads_before)
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _stdout_closed() -> None:
    """The reader of stdout went away (e.g. ``| head``): point stdout at /dev/null so that
    Python's final flush does not raise again, and end quietly, like other Unix tools."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (captured): nothing to flush
        pass


def _install_interrupt_handler() -> object:
    """On Ctrl-C, silence distributed before the KeyboardInterrupt unwinds the command, so
    the cluster shuts down without logging; returns the previous handler (None off the main
    thread, where signals cannot be handled)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupted(signum: int, frame: object) -> None:
        _silence_dask()
        raise KeyboardInterrupt

    return signal.signal(signal.SIGINT, interrupted)


def entry_point() -> None:  # pragma: no cover - the console script
    """The ``varref`` console script: :func:`main` with Ctrl-C handled during shutdown too."""
    try:
        status = main()
    except KeyboardInterrupt:  # a second Ctrl-C while shutting down
        _silence_dask()
        print("varref: interrupted", file=sys.stderr, flush=True)
        status = 130
    try:
        sys.stdout.flush()  # output still buffered for a pipe that may be closed by now
    except BrokenPipeError:
        _stdout_closed()
        status = 141
    _leave(status)


def _leave(status: int) -> None:  # pragma: no cover - the console script
    """End the process as ``sys.exit`` would, without the interpreter's final teardown.

    Every output of a command is written and closed when it returns; what remains at exit is
    freeing what the run loaded — numba's compiled kernels, gemmi's and Coot's objects,
    every module — ~0.25 s of a 5 s refinement. So the exit steps that matter run here in
    Python's order (non-daemon threads joined, among them idle thread pools; exit handlers,
    e.g. logging's flush; the streams flushed) and the process then ends with ``os._exit``.
    """
    try:
        shutdown = getattr(threading, "_shutdown", None)  # what the interpreter calls first
        if shutdown is not None:
            shutdown()
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # closed pipe or stream: nothing more to say
                pass
    finally:
        os._exit(status)


if __name__ == "__main__":  # pragma: no cover
    entry_point()
