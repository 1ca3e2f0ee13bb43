"""Train a flax linen model with a learned optimizer, as with any optax optimizer.

The three learned-optimizer lines are marked (1)-(3): build the optax transform from a checkpoint
(a file, or an outer-training run directory whose newest ``theta_<step>.lopt`` is used) or from
(lopt, θ); init its state; pass the loss to ``update``.

    python examples/flax_training_loop.py                    # untrained MLPLOpt θ (runs offline)
    python examples/flax_training_loop.py --checkpoint runs/my_run   # a meta-trained θ

The data is a synthetic two-spirals classification problem generated here, so the example needs
no download.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import learned_opt  # noqa: E402


class MLP(nn.Module):
    hidden: int = 64

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(self.hidden)(x))
        x = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(2)(x)


def spirals(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    t = np.sqrt(rng.uniform(size=n)) * 3 * np.pi
    label = rng.integers(0, 2, size=n)
    sign = np.where(label == 1, 1.0, -1.0)
    x = np.stack([sign * t * np.cos(t), sign * t * np.sin(t)], 1) / 10 + rng.normal(scale=0.05, size=(n, 2))
    return jnp.asarray(x, jnp.float32), jnp.asarray(label)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="learned-optimizer checkpoint file or run directory")
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args(argv)

    x, y = spirals(512)
    model = MLP()
    params = model.init(jax.random.PRNGKey(0), x[:1])

    def loss_fn(p):
        return optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x), y).mean()

    checkpoint = args.checkpoint
    if checkpoint is None:  # no meta-trained θ given: save an untrained one to show the file route
        lopt = learned_opt.MLPLOpt()
        checkpoint = Path(tempfile.mkdtemp()) / "theta_00000000.lopt"
        learned_opt.save(checkpoint, lopt, lopt.init(jax.random.PRNGKey(1)), {"note": "untrained"})

    tx = learned_opt.as_optax(checkpoint, num_steps=args.steps)           # (1)
    opt_state = tx.init(params)                                          # (2)

    @jax.jit
    def train_step(params, opt_state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params, loss=loss)  # (3)
        return optax.apply_updates(params, updates), opt_state, loss

    for step in range(args.steps):
        params, opt_state, loss = train_step(params, opt_state)
        if step % max(args.steps // 5, 1) == 0 or step == args.steps - 1:
            print(f"step {step:4d}  loss {float(loss):.4f}")
    acc = float(jnp.mean(jnp.argmax(model.apply(params, x), -1) == y))
    print(f"train accuracy {acc:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
