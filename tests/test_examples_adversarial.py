"""examples/adversarial_digits.py: an adversarial image within a per-pixel box (dict bounds)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import adversarial_digits as ex  # noqa: E402


@pytest.fixture(scope="module")
def trained():
    data = ex.digits_splits(0)
    model, params = ex.train_cnn(*data["train"], steps=400, seed=0)
    return data, model, params


def test_attack_fools_the_cnn_inside_the_box(trained):
    data, model, params = trained
    x, y = data["test"]
    fooled = 0
    for i in range(4):
        out = ex.attack(model, params, x[i], int(y[i]), eps=0.25)
        adv = out["adv"].astype(np.float64)
        assert adv.shape == (8, 8) and out["adv"].dtype == np.float32  # x0's dtype kept
        assert np.all(adv >= out["lb"]) and np.all(adv <= out["ub"])  # the per-pixel box
        assert np.all(adv >= 0.0) and np.all(adv <= 1.0)
        assert np.abs(adv - x[i]).max() <= 0.25 + 1e-6
        fooled += out["margin_after"] < 0
        assert out["margin_after"] < out["margin_before"]
    assert fooled >= 3


def test_a_tiny_box_cannot_fool_it(trained):
    data, model, params = trained
    x, y = data["test"]
    out = ex.attack(model, params, x[3], int(y[3]), eps=0.005)
    assert np.abs(out["adv"] - x[3]).max() <= 0.005 + 1e-6
    assert out["margin_after"] > 0  # still classified correctly: the bounds bind


def test_example_main_runs(capsys):
    summary = ex.run(num_images=3, verbose=True)
    assert summary["test_accuracy"] > 0.9
    assert summary["success_rate"] >= 2 / 3
    assert "fooled" in capsys.readouterr().out
    for r in summary["rows"]:
        assert r["linf"] <= 0.25 + 1e-6
        assert r["fooled"] == (r["new_prediction"] != r["label"])
