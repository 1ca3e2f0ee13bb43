"""`learned-opt minimize` (learned_opt.demo): the README's first command."""
import json

import numpy as np
import pytest

from learned_opt import demo


@pytest.mark.parametrize("argv, atol", [
    ([], 1e-6),                                                   # L-BFGS-B, the default
    (["--method", "trust-ncg"], 1e-4),
    (["--method", "adam", "--maxiter", "3000", "--lr", "0.02"], 5e-2),
])
def test_demo_solves_split_rosenbrock(argv, atol, capsys):
    assert demo.main(argv + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["success"] and list(out["x"]) == ["a", "b"]
    np.testing.assert_allclose(out["x"]["a"] + out["x"]["b"], 1.0, atol=atol)


def test_demo_quadratic_closed_form(capsys):
    assert demo.main(["--problem", "quadratic", "--method", "BFGS", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # ½ Σ d_i x_i² − Σ x_i with d = 1..7 over u (2×2) then v (3): x*_i = 1 / d_i
    np.testing.assert_allclose(np.ravel(out["x"]["u"]), 1.0 / np.arange(1, 5), atol=1e-6)
    np.testing.assert_allclose(out["x"]["v"], 1.0 / np.arange(5, 8), atol=1e-6)


def test_demo_human_readable_output(capsys):
    assert demo.main(["--maxiter", "2"]) == 1  # stopped by maxiter: not a success, exit code 1
    text = capsys.readouterr().out
    assert "success  False" in text and "x['a'] = " in text
