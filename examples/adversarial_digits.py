"""An adversarial input under per-pixel box bounds, found with ``learned_opt.minimize`` (JAX).

A small CNN (two 3×3 convolutions and a dense layer, flax) is trained on 600 of the shipped
8×8 digits. For each of the first test images it classifies correctly, the image itself is the
variable, ``x = {"image": (8, 8)}``, and L-BFGS-B minimizes the classification margin

    m(x) = z_true(x) − max_{c ≠ true} z_c(x)        (the image is misclassified once m < 0)

inside a per-pixel box given as dicts of arrays: ``lb = max(0, x₀ − ε)``, ``ub = min(1, x₀ + ε)``
(every pixel moves by at most ε and stays a valid intensity). The run stops at the first iterate
with ``m < −κ`` (κ: a small confidence margin) through the callback. The table reports, per
image, the true and the new predicted label, the margin before/after and the L∞/L2 size of the
perturbation.

    python examples/adversarial_digits.py             # runs offline in a few seconds
    python examples/adversarial_digits.py --eps 0.1   # a tighter box: fewer successes
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _digits import digits_splits  # noqa: E402
from learned_opt import minimize  # noqa: E402


class SmallCNN(nn.Module):
    @nn.compact
    def __call__(self, x):  # x: (n, 8, 8)
        h = x[..., None]
        h = nn.relu(nn.Conv(16, (3, 3))(h))
        h = nn.relu(nn.Conv(32, (3, 3), strides=(2, 2))(h))
        return nn.Dense(10)(h.reshape(h.shape[0], -1))


def train_cnn(x: np.ndarray, y: np.ndarray, steps: int = 400, seed: int = 0):
    model = SmallCNN()
    params = model.init(jax.random.PRNGKey(seed), jnp.asarray(x[:1]))
    tx = optax.adam(3e-3)
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        loss, g = jax.value_and_grad(lambda p: optax.softmax_cross_entropy_with_integer_labels(
            model.apply(p, x), y).mean())(params)
        updates, state = tx.update(g, state, params)
        return optax.apply_updates(params, updates), state, loss

    for _ in range(steps):
        params, state, _ = step(params, state)
    return model, params


def margin(x: dict, model: nn.Module, params, label: jax.Array) -> jax.Array:
    """``z_true − max_{c≠true} z_c`` of one image (negative: misclassified)."""
    z = model.apply(params, x["image"][None])[0]
    other = jnp.max(jnp.where(jnp.arange(10) == label, -jnp.inf, z))
    return z[label] - other


def attack(model, params, image: np.ndarray, label: int, eps: float, kappa: float = 0.5,
           maxiter: int = 100):
    """L-BFGS-B on the margin inside the per-pixel box; stops once the margin is below −kappa."""
    lb = {"image": np.clip(image - eps, 0.0, 1.0)}
    ub = {"image": np.clip(image + eps, 0.0, 1.0)}
    f = jax.jit(lambda x: margin(x, model, params, label))

    def stop_when_fooled(intermediate_result):
        return intermediate_result.fun < -kappa

    res = minimize(lambda x, lab: margin(x, model, params, lab), {"image": image.astype(np.float32)},
                   args=(np.int32(label),), method="L-BFGS-B", lb_dict=lb, ub_dict=ub,
                   callback=stop_when_fooled, options={"maxiter": maxiter})
    adv = np.asarray(res.x["image"])
    return {"adv": adv, "lb": lb["image"], "ub": ub["image"], "result": res,
            "margin_before": float(f({"image": jnp.asarray(image)})),
            "margin_after": float(f({"image": jnp.asarray(adv)}))}


def run(seed: int = 0, eps: float = 0.25, num_images: int = 8, train_steps: int = 400,
        verbose: bool = True) -> dict:
    data = digits_splits(seed)
    model, params = train_cnn(*data["train"], steps=train_steps, seed=seed)
    x_test, y_test = data["test"]
    pred = np.asarray(jnp.argmax(model.apply(params, jnp.asarray(x_test)), axis=1))
    accuracy = float(np.mean(pred == y_test))
    chosen = np.nonzero(pred == y_test)[0][:num_images]
    rows = []
    for i in chosen:
        out = attack(model, params, x_test[i], int(y_test[i]), eps)
        new = int(jnp.argmax(model.apply(params, jnp.asarray(out["adv"])[None])[0]))
        delta = out["adv"].astype(np.float64) - x_test[i]
        rows.append({"index": int(i), "label": int(y_test[i]), "new_prediction": new, "fooled": new != y_test[i],
                     "margin_before": out["margin_before"], "margin_after": out["margin_after"],
                     "linf": float(np.abs(delta).max()), "l2": float(np.linalg.norm(delta)),
                     "nit": out["result"].nit, "adv": out["adv"], "lb": out["lb"], "ub": out["ub"]})
    summary = {"test_accuracy": accuracy, "eps": eps, "rows": rows,
               "success_rate": float(np.mean([r["fooled"] for r in rows]))}
    if verbose:
        print(f"CNN test accuracy {accuracy:.3f}; attacking {len(rows)} correctly classified test images, "
              f"per-pixel box ±{eps} within [0, 1]\n")
        print("| test image | label | prediction after | margin before → after | L∞ | L2 | iterations |")
        print("|---:|---:|---:|---|---:|---:|---:|")
        for r in rows:
            fooled = "" if r["fooled"] else " (not fooled)"
            print(f"| {r['index']} | {r['label']} | {r['new_prediction']}{fooled} | "
                  f"{r['margin_before']:.2f} → {r['margin_after']:.2f} | {r['linf']:.3f} | {r['l2']:.3f} | "
                  f"{r['nit']} |")
        print(f"\nfooled {sum(r['fooled'] for r in rows)} of {len(rows)}")
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eps", type=float, default=0.25, help="per-pixel L∞ budget (pixels are in [0, 1])")
    ap.add_argument("--num-images", type=int, default=8)
    args = ap.parse_args(argv)
    if not 0 < args.eps <= 1:
        ap.error("--eps must be in (0, 1]")
    run(args.seed, args.eps, args.num_images)
    return 0


if __name__ == "__main__":
    sys.exit(main())
