"""Meta-train ScheduledAdamLOpt(trust_features=True) warm-started from the sched_pool θ.

The trust features enter the per-tensor context between the loss features and the tensor
statistics, so the trust-feature θ is the sched_pool θ with zero rows inserted there in the first
layer of the step-size network (``t_w0``) and of the correction network (``r_w0``). At the start
the warm-started optimizer therefore makes exactly the updates of the sched_pool optimizer
(checked below before training), and meta-training learns what to do with the new inputs.

    python meta_runs/sched_trust/warm_start.py --out runs/sched_trust           # fresh
    learned-opt train --config runs/sched_trust/config.json --out runs/sched_trust --resume  # continue
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from learned_opt import features as F
from learned_opt.checkpoint import load as load_checkpoint
from learned_opt.scheduled_adam import LOSS_DECAYS, NUM_ROW_FEATURES, NUM_TRUST_FEATURES, ScheduledAdamLOpt
from outer_train import TrainConfig, train

HERE = Path(__file__).resolve().parent


def grow_theta(theta: dict, lopt: ScheduledAdamLOpt) -> dict:
    """The no-trust θ with zero input rows for the trust features (same updates at the start)."""
    at = F.num_time_features(lopt.timescales) + len(LOSS_DECAYS) + 1
    grown = dict(theta)
    zeros = np.zeros((NUM_TRUST_FEATURES, np.shape(theta["t_w0"])[1]), np.float32)
    grown["t_w0"] = jnp.asarray(np.insert(np.asarray(theta["t_w0"]), at, zeros, axis=0))
    if "r_w0" in theta:
        zeros = np.zeros((NUM_TRUST_FEATURES, np.shape(theta["r_w0"])[1]), np.float32)
        grown["r_w0"] = jnp.asarray(np.insert(np.asarray(theta["r_w0"]), NUM_ROW_FEATURES + at, zeros, axis=0))
    return grown


def check_same_updates(old_lopt, old_theta, new_lopt, new_theta) -> float:
    """Max |Δ update| of the two optimizers over 20 steps of a small regression problem."""
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    X, y = jax.random.normal(k1, (32, 6)), jax.random.normal(k2, (32,))
    params = {"w": jnp.zeros((6,)), "b": jnp.zeros(())}

    def loss(p):
        return jnp.mean((X @ p["w"] + p["b"] - y) ** 2)

    worst = 0.0
    a, b = old_lopt.opt_fn(old_theta, num_steps=20), new_lopt.opt_fn(new_theta, num_steps=20)
    pa, pb, sa, sb = params, params, a.init(params), b.init(params)
    for _ in range(20):
        la, ga = jax.value_and_grad(loss)(pa)
        lb, gb = jax.value_and_grad(loss)(pb)
        ua, sa = a.update(ga, sa, pa, loss=la)
        ub, sb = b.update(gb, sb, pb, loss=lb)
        worst = max(worst, max(float(jnp.max(jnp.abs(ua[k] - ub[k]))) for k in ua))
        pa = jax.tree_util.tree_map(jnp.add, pa, ua)
        pb = jax.tree_util.tree_map(jnp.add, pb, ub)
    return worst


class WarmStarted(ScheduledAdamLOpt):
    """ScheduledAdamLOpt whose ``init`` returns a given θ (saved checkpoints name the base class)."""

    name = "scheduled_adam"

    def __init__(self, theta: dict, **kwargs):
        super().__init__(**kwargs)
        self._theta = theta

    def init(self, key):
        return self._theta


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--from", dest="source", default=str(HERE.parent / "sched_pool" / "theta_00004277.lopt"))
    p.add_argument("--config", default=str(HERE / "config.json"))
    p.add_argument("--out", default="runs/sched_trust")
    args = p.parse_args()
    old_lopt, old_theta = load_checkpoint(args.source)
    cfg = TrainConfig(**{**json.loads(Path(args.config).read_text()), "out": args.out})
    kwargs = {**cfg.optimizer_kwargs, "trust_features": True}
    theta = grow_theta(old_theta, ScheduledAdamLOpt(**kwargs))
    lopt = WarmStarted(theta, **kwargs)
    diff = check_same_updates(old_lopt, old_theta, ScheduledAdamLOpt(**kwargs), theta)
    print(f"warm start from {args.source}: max |update difference| over 20 steps = {diff:.3g}")
    if diff > 1e-6:
        raise SystemExit("the warm-started optimizer does not reproduce the source optimizer")
    result = train(cfg, lopt=lopt)
    print(result.stopped, int(result.step))


if __name__ == "__main__":
    main()
