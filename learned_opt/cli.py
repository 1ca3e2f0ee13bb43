"""The ``learned-opt`` command line (also ``python -m learned_opt``).

Each subcommand lives in its own module and is imported only when invoked, so ``import
learned_opt`` stays light. A subcommand entry point takes the remaining argv list and returns an
exit code.

Errors are handled here, once, for every subcommand (:func:`main`):

* **user errors** — :class:`learned_opt.errors.UserError` (raise it for bad names, values, files,
  options or run directories), a ``ValueError`` / ``TypeError`` / ``KeyError`` raised by a
  ``raise`` statement in this project's own code (argument validation), an unreadable or missing
  file (``FileNotFoundError``, ``PermissionError``, ...; a full disk), a malformed JSON/YAML file,
  and bad command-line options (argparse's errors) — print ``learned-opt <command>: error:
  <message>`` as one line on stderr and exit with status 2;
* anything else is a **bug**: the traceback, then a one-line hint to report it; exit status 1;
* ``--debug`` (anywhere before a literal ``--``; or ``LEARNED_OPT_DEBUG=1``) prints the traceback
  for user errors too; Ctrl-C exits with status 130 and one line.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Iterator, Sequence

from learned_opt.errors import USAGE_EXIT_CODE, UserError

# subcommand -> ("module:function", one-line help)
SUBCOMMANDS = {
    "minimize": ("learned_opt.demo:main", "run learned_opt.minimize on a built-in test problem"),
    "train": ("outer_train.cli:main", "meta-train a learned optimizer"),
    "eval": ("eval.cli:main", "evaluate an optimizer on a suite; writes report.md, results.json, plots"),
    "run": ("eval.main_job:main", "the main job: meta-train, evaluate and report on the embedded default"),
}

BUG_EXIT_CODE = 1
INTERRUPT_EXIT_CODE = 130
REPORT_HINT = ("this is a bug in learned_opt, not in your input: please report it with the command line "
               "and the traceback above")
# the packages whose deliberate `raise ValueError(...)` statements are input validation
_PROJECT_PACKAGES = ("learned_opt", "outer_train", "eval", "tasks", "tasksets")
# OSError numbers that describe the user's files or machine rather than a bug
_USER_OS_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.EEXIST,
                   errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENAMETOOLONG, errno.ELOOP}


def _usage() -> str:
    lines = ["usage: learned-opt [--version] [--debug] <command> [args...]", "", "commands:"]
    for name, (_, help_text) in SUBCOMMANDS.items():
        lines.append(f"  {name:<10} {help_text}")
    lines.append("")
    lines.append("`learned-opt <command> --help` shows a command's options; --debug shows tracebacks.")
    return "\n".join(lines)


def _split_debug(argv: list[str]) -> tuple[list[str], bool]:
    """Remove every ``--debug`` before a literal ``--``; return ``(argv, debug)``."""
    end = argv.index("--") if "--" in argv else len(argv)
    debug = "--debug" in argv[:end]
    kept = [a for a in argv[:end] if a != "--debug"] + argv[end:]
    return kept, debug or os.environ.get("LEARNED_OPT_DEBUG", "") not in ("", "0")


def _project_dirs() -> list[Path]:
    root = Path(__file__).resolve().parent.parent
    return [root / name for name in _PROJECT_PACKAGES]


def _raised_deliberately(err: BaseException) -> bool:
    """Whether ``err`` comes from a ``raise`` statement in this project's code (validation),
    rather than from deep inside a library or from a Python-level mistake in our code."""
    tb = err.__traceback__
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    if last is None:
        return False
    filename = Path(last.tb_frame.f_code.co_filename).resolve()
    if not any(d in filename.parents for d in _project_dirs()):
        return False
    import linecache
    line = linecache.getline(str(filename), last.tb_lineno).strip()
    # a multi-line raise statement reports its first line, which starts with "raise"
    return line.startswith("raise ")


def is_user_error(err: BaseException) -> bool:
    """Whether ``err`` is the user's mistake (reported in one line) rather than a bug."""
    if isinstance(err, UserError):
        return True
    if isinstance(err, OSError) and err.errno in _USER_OS_ERRNOS:
        return True
    if isinstance(err, json.JSONDecodeError) or any(c.__name__ == "YAMLError" for c in type(err).__mro__):
        return True  # a malformed config / JSON file the user gave
    if isinstance(err, (ValueError, TypeError, KeyError, LookupError)):
        return _raised_deliberately(err)
    return False


def _one_line(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        text = err.strerror + (f": {err.filename}" if err.filename else "")
    elif isinstance(err, KeyError) and len(err.args) == 1:
        text = str(err.args[0])
    else:
        text = str(err) or type(err).__name__
    if isinstance(err, json.JSONDecodeError):
        text = f"malformed JSON: {text}"
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


@contextlib.contextmanager
def _argparse_errors_raise() -> Iterator[None]:
    """Within the block, argparse's option errors raise :class:`UserError` (reported in one line
    by :func:`main`) instead of printing the usage and exiting."""
    original = argparse.ArgumentParser.error

    def error(self: argparse.ArgumentParser, message: str):
        raise UserError(f"{message} (see `{self.prog} --help`)")

    argparse.ArgumentParser.error = error
    try:
        yield
    finally:
        argparse.ArgumentParser.error = original


def report_error(err: BaseException, prog: str, debug: bool = False) -> int:
    """Print ``err`` the way the command line does and return the exit status (2 or 1)."""
    if is_user_error(err):
        if debug:
            traceback.print_exception(err, file=sys.stderr)
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr, flush=True)
        return USAGE_EXIT_CODE
    traceback.print_exception(err, file=sys.stderr)
    print(f"{prog}: internal error ({type(err).__name__}); {REPORT_HINT}", file=sys.stderr, flush=True)
    return BUG_EXIT_CODE


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``argv`` (default ``sys.argv[1:]``) to a subcommand; see the module docstring."""
    argv, debug = _split_debug(list(sys.argv[1:] if argv is None else argv))
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        from learned_opt import __version__
        print(f"learned-opt {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in SUBCOMMANDS:
        print(f"learned-opt: error: unknown command {command!r}; commands: {', '.join(SUBCOMMANDS)} "
              f"(see `learned-opt --help`)", file=sys.stderr)
        return USAGE_EXIT_CODE
    target, _ = SUBCOMMANDS[command]
    module_name, func_name = target.split(":")
    prog = f"learned-opt {command}"
    try:
        func = getattr(importlib.import_module(module_name), func_name)
        with _argparse_errors_raise():
            result = func(rest)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return INTERRUPT_EXIT_CODE
    except SystemExit:
        raise
    except Exception as err:  # noqa: BLE001 - the one place every error of every subcommand is reported
        return report_error(err, prog, debug)
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
