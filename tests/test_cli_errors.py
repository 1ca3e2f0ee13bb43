"""The ``learned-opt`` dispatcher turns user errors into one line + exit 2, bugs into a traceback
+ a report hint (exit 1); ``--debug`` shows tracebacks (issue 12)."""
from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

from learned_opt import cli
from learned_opt.errors import USAGE_EXIT_CODE, UserError

REPO = Path(__file__).resolve().parents[1]


def _one_error_line(capsys, prefix: str) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(prefix), lines[0]
    assert "Traceback" not in captured.err
    return lines[0]


@pytest.mark.parametrize("argv,needle", [
    (["minimize", "--method", "no_such_method"], "unknown method 'no_such_method'"),
    (["minimize", "--no-such-option"], "unrecognized arguments: --no-such-option"),
    (["train", "--preset", "nope", "--out", "x"], "unknown preset 'nope'"),
    (["train", "--preset", "quadratic", "--outer-steps", "abc"], "--outer-steps: invalid int value"),
    (["train", "--preset", "quadratic", "--set", "outer_lr=-1", "--print-config"], "outer_lr"),
    (["train", "--preset", "quadratic", "--set", "no_equals_sign"], "key=value"),
    (["train", "--preset", "quadratic", "--estimator", "nope"], "--estimator: invalid choice"),
])
def test_user_errors_are_one_line_exit_2(argv, needle, capsys):
    assert cli.main(argv) == USAGE_EXIT_CODE
    line = _one_error_line(capsys, f"learned-opt {argv[0]}: error: ")
    assert needle in line


def test_bad_files_are_one_line_naming_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert cli.main(["train", "--config", str(bad)]) == USAGE_EXIT_CODE
    assert str(bad) in _one_error_line(capsys, "learned-opt train: error: ")
    missing = tmp_path / "missing.yaml"
    assert cli.main(["train", "--config", str(missing)]) == USAGE_EXIT_CODE
    assert str(missing) in _one_error_line(capsys, "learned-opt train: error: ")


def test_unknown_command(capsys):
    assert cli.main(["no_such_command"]) == USAGE_EXIT_CODE
    assert "unknown command 'no_such_command'" in _one_error_line(capsys, "learned-opt: error: ")


def _fake_subcommand(monkeypatch, exc: BaseException) -> None:
    """Register a subcommand ``fake`` whose entry point raises ``exc`` (from this test module)."""
    module = types.ModuleType("fake_cli_module")

    def main(argv):
        raise exc

    module.main = main
    monkeypatch.setitem(sys.modules, "fake_cli_module", module)
    monkeypatch.setitem(cli.SUBCOMMANDS, "fake", ("fake_cli_module:main", "test"))


def test_user_error_class_and_debug_flag(monkeypatch, capsys):
    _fake_subcommand(monkeypatch, UserError("bad value for --x: 3\nmust be even"))
    assert cli.main(["fake"]) == USAGE_EXIT_CODE
    line = _one_error_line(capsys, "learned-opt fake: error: ")
    assert line.endswith("bad value for --x: 3 must be even")  # a multi-line message folded
    assert cli.main(["fake", "--debug"]) == USAGE_EXIT_CODE
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("learned-opt fake: error: ")


def test_bugs_show_traceback_and_report_hint(monkeypatch, capsys):
    _fake_subcommand(monkeypatch, ZeroDivisionError("division by zero"))
    assert cli.main(["fake"]) == cli.BUG_EXIT_CODE
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError" in err
    assert "please report it" in err.strip().splitlines()[-1]


def test_incidental_value_error_is_a_bug_not_a_user_error():
    """A ValueError raised deep inside a library (not a validating `raise` in our code) is a bug."""
    try:
        int("not a number")  # raised by Python itself
    except ValueError as err:
        assert not cli.is_user_error(err)
    try:
        raise ValueError("deliberate")  # a `raise` in a test file: not project code either
    except ValueError as err:
        assert not cli.is_user_error(err)
    from learned_opt.registry import get_optimizer
    with pytest.raises(ValueError) as info:
        get_optimizer("nope")  # a validating raise inside learned_opt
    assert cli.is_user_error(info.value)


def test_keyboard_interrupt(monkeypatch, capsys):
    _fake_subcommand(monkeypatch, KeyboardInterrupt())
    assert cli.main(["fake"]) == cli.INTERRUPT_EXIT_CODE
    assert capsys.readouterr().err.strip() == "learned-opt fake: interrupted"


def test_real_process_exit_status_and_single_line():
    """Through ``python -m learned_opt`` (the installed entry point's code path)."""
    proc = subprocess.run([sys.executable, "-m", "learned_opt", "minimize", "--method", "no_such_method"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
