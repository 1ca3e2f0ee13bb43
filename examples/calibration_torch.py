"""Post-hoc calibration of a trained PyTorch classifier with ``learned_opt.minimize`` on torch tensors.

The PyTorch twin of ``calibration_jax.py`` (needs ``pip install -e ".[torch]"``): an MLP trained
with ``torch.optim.Adam`` to 100% training accuracy on 200 of the shipped 8×8 digits, then
per-class temperature ``T_c`` and bias ``b_c`` (``softmax(z / T + b)``) fitted by L-BFGS-B on a
calibration split (600 images) plus a weak prior toward the identity. The objective is plain torch
code over a dict of float64 tensors; gradients come from ``torch.autograd`` and the result comes
back as tensors. The same fit is then repeated with the ``torch.optim`` front door
(``learned_opt.torch.Minimizer`` on a small ``nn.Module``) to show the two agree.

    python examples/calibration_torch.py          # runs offline in a few seconds
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _digits import digits_splits, expected_calibration_error  # noqa: E402
from learned_opt import minimize  # noqa: E402
from learned_opt.torch import Minimizer  # noqa: E402

PRIOR = 1e-3
SIZES = (200, 600)  # train, calibration; the remaining 997 images are the test split
BOUNDS = ({"temperature": 0.05, "bias": None}, {"temperature": 50.0, "bias": None})


def train_classifier(x: torch.Tensor, y: torch.Tensor, steps: int = 1500, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 128), torch.nn.ReLU(),
                                torch.nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return model


def calibrated_log_probs(cal: dict, logits: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits / cal["temperature"] + cal["bias"], dim=-1)


def objective(cal: dict, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Calibration NLL plus the weak prior toward T = 1, b = 0 (written in torch)."""
    nll = torch.nn.functional.nll_loss(calibrated_log_probs(cal, logits), labels)
    return nll + PRIOR * ((torch.log(cal["temperature"]) ** 2).sum() + (cal["bias"] ** 2).sum())


class Calibrator(torch.nn.Module):
    """The same 20 numbers as an ``nn.Module``, for the ``torch.optim`` front door."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.temperature = torch.nn.Parameter(torch.ones(num_classes, dtype=torch.float64))
        self.bias = torch.nn.Parameter(torch.zeros(num_classes, dtype=torch.float64))

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return calibrated_log_probs({"temperature": self.temperature, "bias": self.bias}, logits)


def run(seed: int = 0, train_steps: int = 1500, verbose: bool = True) -> dict:
    data = {k: (torch.tensor(x), torch.tensor(y)) for k, (x, y) in digits_splits(seed, SIZES).items()}
    model = train_classifier(*data["train"], steps=train_steps, seed=seed)
    with torch.no_grad():
        logits = {k: model(x).double() for k, (x, _) in data.items()}
    labels = {k: y for k, (_, y) in data.items()}

    x0 = {"temperature": torch.ones(10, dtype=torch.float64), "bias": torch.zeros(10, dtype=torch.float64)}
    res = minimize(objective, x0, args=(logits["calib"], labels["calib"]), method="L-BFGS-B",
                   lb_dict=BOUNDS[0], ub_dict=BOUNDS[1])
    if not res.success:
        raise RuntimeError(f"calibration did not converge: {res.message}")

    # the same fit through learned_opt.torch.Minimizer (a torch.optim.Optimizer)
    calibrator = Calibrator()
    opt = Minimizer(calibrator.named_parameters(), method="L-BFGS-B", bounds=BOUNDS)

    def closure():
        nll = torch.nn.functional.nll_loss(calibrator(logits["calib"]), labels["calib"])
        return nll + PRIOR * ((torch.log(calibrator.temperature) ** 2).sum() + (calibrator.bias ** 2).sum())

    opt.step(closure)

    out = {"result": res, "module_result": opt.result, "calibrator": calibrator,
           "train_accuracy": float((logits["train"].argmax(1) == labels["train"]).double().mean())}
    for name, cal in (("before", {k: torch.ones(10, dtype=torch.float64) if k == "temperature" else
                                  torch.zeros(10, dtype=torch.float64) for k in x0}), ("after", res.x)):
        with torch.no_grad():
            lp = calibrated_log_probs(cal, logits["test"])
        probs = lp.exp().numpy()
        out[f"nll_{name}"] = float(torch.nn.functional.nll_loss(lp, labels["test"]))
        out[f"ece_{name}"] = expected_calibration_error(probs, labels["test"].numpy())
        out[f"accuracy_{name}"] = float(np.mean(probs.argmax(1) == labels["test"].numpy()))
    if verbose:
        print(f"classifier: train accuracy {out['train_accuracy']:.3f}; calibration fitted by L-BFGS-B in "
              f"{res.nit} iterations on torch tensors, calib objective {res.fun:.4f} "
              f"(torch.optim front door: {opt.result.fun:.4f})")
        print("temperature per class:", np.round(res.x["temperature"].numpy(), 2))
        print("bias per class:       ", np.round(res.x["bias"].numpy(), 2))
        print(f"\n| test split (n={len(labels['test'])}) | ECE | NLL | accuracy |\n|---|---:|---:|---:|")
        for name in ("before", "after"):
            print(f"| {name} calibration | {out[f'ece_{name}']:.4f} | {out[f'nll_{name}']:.4f} | "
                  f"{out[f'accuracy_{name}']:.3f} |")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-steps", type=int, default=1500)
    args = ap.parse_args(argv)
    run(args.seed, args.train_steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
