"""Exceptions that the command line reports as one line (no traceback).

:class:`UserError` marks a problem with the user's input or environment — a bad name, value,
option, file or run directory — as opposed to a bug. Any subcommand (or library code it calls)
may raise it; :func:`learned_opt.cli.main` prints ``learned-opt <command>: error: <message>`` to
stderr and exits with status 2 (``--debug`` shows the traceback instead). This module imports
nothing heavy, so any package can raise ``UserError`` cheaply::

    from learned_opt.errors import UserError
    raise UserError(f"unknown suite {name!r}; known: {sorted(SUITES)}")

``UserError`` subclasses ``ValueError``, so code that already catches ``ValueError`` keeps working.
"""
from __future__ import annotations

USAGE_EXIT_CODE = 2  # exit status of a user error (the argparse convention)


class UserError(ValueError):
    """A user-facing error: bad input, option, file or run directory (exit status 2, one line)."""


__all__ = ["USAGE_EXIT_CODE", "UserError"]
