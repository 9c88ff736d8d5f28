"""The one exception type that means "the user's input is wrong".

The CLI turns an :class:`InputError` into a single line on stderr and exit code 2; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

from os import PathLike


class InputError(Exception):
    """Bad user input: names the file (or option) and the problem in one line.

    Parameters
    ----------
    source
        The file path or option the problem was found in.
    problem
        What is wrong, and where helpful, how to fix it.
    """

    def __init__(self, source: str | PathLike, problem: str):
        self.source = str(source)
        self.problem = " ".join(str(problem).split())  # always one line
        super().__init__(f"{self.source}: {self.problem}")
