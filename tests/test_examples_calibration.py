"""examples/calibration_{jax,torch}.py: per-class temperature and bias by L-BFGS-B over a dict
lower the test calibration error and NLL; the torch version's two front doors agree."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))


def test_calibration_jax_lowers_ece_and_nll():
    import calibration_jax as ex
    out = ex.run(seed=0, verbose=False)
    res = out["result"]
    assert res.success and list(res.x) == ["temperature", "bias"]
    assert np.all(res.x["temperature"] >= 0.05) and np.all(res.x["temperature"] <= 50.0)
    assert out["train_accuracy"] == 1.0  # over-fitted, hence over-confident
    assert out["ece_after"] < 0.7 * out["ece_before"]
    assert out["nll_after"] < out["nll_before"]
    assert abs(out["accuracy_after"] - out["accuracy_before"]) < 0.02
    # deterministic: the same seed gives the same fit
    again = ex.run(seed=0, verbose=False)["result"]
    np.testing.assert_allclose(again.x["temperature"], res.x["temperature"], rtol=1e-6)


def test_ece_of_known_cases():
    from _digits import expected_calibration_error
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    # bin 0.9: accuracy 1/2 vs confidence 0.9; bin 0.6: accuracy 1 vs 0.6  → (0.4 + 0.4) / 2
    assert expected_calibration_error(probs, np.array([0, 1, 0, 0])) == pytest.approx(0.4)
    assert expected_calibration_error(np.eye(3), np.arange(3)) == 0.0


@pytest.mark.torch
def test_calibration_torch_lowers_ece_and_both_front_doors_agree():
    torch = pytest.importorskip("torch")
    import calibration_torch as ex
    out = ex.run(seed=0, verbose=False)
    res, mod = out["result"], out["module_result"]
    assert res.success and isinstance(res.x["temperature"], torch.Tensor)
    assert res.x["temperature"].dtype == torch.float64
    assert out["ece_after"] < 0.7 * out["ece_before"]
    assert out["nll_after"] < out["nll_before"]
    np.testing.assert_allclose(mod.x["temperature"].numpy(), res.x["temperature"].numpy(), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(mod.x["bias"].numpy(), res.x["bias"].numpy(), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(out["calibrator"].temperature.detach().numpy(), res.x["temperature"].numpy(),
                               rtol=1e-6, atol=1e-8)
