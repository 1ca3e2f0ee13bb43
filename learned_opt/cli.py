"""The ``learned-opt`` command line (also ``python -m learned_opt``).

Each subcommand lives in its own module and is imported only when invoked, so ``import
learned_opt`` stays light. A subcommand entry point takes the remaining argv list and returns an
exit code.
"""
from __future__ import annotations

import importlib
import sys
from typing import Sequence

# subcommand -> ("module:function", one-line help)
SUBCOMMANDS = {
    "minimize": ("learned_opt.demo:main", "run learned_opt.minimize on a built-in test problem"),
    "train": ("outer_train.cli:main", "meta-train a learned optimizer"),
    "eval": ("eval.cli:main", "evaluate an optimizer on a suite; writes report.md, results.json, plots"),
    "run": ("eval.main_job:main", "the main job: meta-train, evaluate and report on the embedded default"),
}


def _usage() -> str:
    lines = ["usage: learned-opt [--version] <command> [args...]", "", "commands:"]
    for name, (_, help_text) in SUBCOMMANDS.items():
        lines.append(f"  {name:<10} {help_text}")
    lines.append("")
    lines.append("`learned-opt <command> --help` shows a command's options.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        from learned_opt import __version__
        print(f"learned-opt {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in SUBCOMMANDS:
        print(f"learned-opt: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    target, _ = SUBCOMMANDS[command]
    module_name, func_name = target.split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    result = func(rest)
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
