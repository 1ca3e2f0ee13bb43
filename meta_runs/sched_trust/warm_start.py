"""Meta-train ScheduledAdamLOpt(trust_features=True) warm-started from the sched_pool θ.

The trust features enter the per-tensor context between the loss features and the tensor
statistics; :meth:`ScheduledAdamLOpt.with_trust_features` grows the sched_pool θ with zero input
rows there, so at the start the optimizer makes exactly sched_pool's updates (checked below before
training) and meta-training learns what to do with the new inputs. The grown θ is written to
``OUT/init.lopt`` and the run starts from it through the config key ``init_theta``.

    python meta_runs/sched_trust/warm_start.py --out runs/sched_trust                          # fresh
    learned-opt train --config runs/sched_trust/config.json --out runs/sched_trust --resume   # continue

The same script warm-starts any optimizer with a ``with_trust_features`` method;
``meta_runs/hier_trust`` is ``HierarchicalLOpt`` grown from ``hierarchical_scheduled``:

    python meta_runs/sched_trust/warm_start.py --from learned_opt/pretrained/hierarchical_scheduled.lopt --config meta_runs/hier_trust/config.json --out runs/hier_trust
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp

from learned_opt.checkpoint import load, save
from outer_train import TrainConfig, train

HERE = Path(__file__).resolve().parent


def max_update_difference(a, b, steps: int = 20) -> float:
    """Max |Δ update| of two optax transforms over ``steps`` steps of a small regression problem."""
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    X, y = jax.random.normal(k1, (32, 6)), jax.random.normal(k2, (32,))

    def loss(p):
        return jnp.mean((X @ p["w"] + p["b"] - y) ** 2)

    params = {"w": jnp.zeros((6,)), "b": jnp.zeros(())}
    pa, pb, sa, sb, worst = params, params, a.init(params), b.init(params), 0.0
    for _ in range(steps):
        (la, ga), (lb, gb) = jax.value_and_grad(loss)(pa), jax.value_and_grad(loss)(pb)
        ua, sa = a.update(ga, sa, pa, loss=la)
        ub, sb = b.update(gb, sb, pb, loss=lb)
        worst = max(worst, max(float(jnp.max(jnp.abs(ua[k] - ub[k]))) for k in ua))
        pa, pb = jax.tree_util.tree_map(jnp.add, pa, ua), jax.tree_util.tree_map(jnp.add, pb, ub)
    return worst


def warm_start_and_train(source: str, config: str, out_dir: str, grow: str, tolerance: float = 1e-6) -> None:
    """Grow the θ of ``source`` with ``ScheduledAdamLOpt.<grow>``, check that the grown optimizer
    reproduces the source's updates to ``tolerance``, save it as ``OUT/init.lopt`` and train the
    config from it (config key ``init_theta``)."""
    source_lopt, source_theta = load(source)
    lopt, theta = getattr(source_lopt, grow)(source_theta)
    diff = max_update_difference(source_lopt.opt_fn(source_theta, num_steps=20), lopt.opt_fn(theta, num_steps=20))
    print(f"warm start from {source}: max |update difference| over 20 steps = {diff:.3g}")
    if diff > tolerance:
        raise SystemExit("the warm-started optimizer does not reproduce the source optimizer")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = save(out / "init.lopt", lopt, theta, {"warm_start_from": source})
    cfg = TrainConfig(**{**json.loads(Path(config).read_text()), "out": str(out), "init_theta": str(start)})
    result = train(cfg)
    print(result.stopped, int(result.step))


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--from", dest="source", default=str(HERE.parent / "sched_pool" / "theta_00004277.lopt"))
    p.add_argument("--config", default=str(HERE / "config.json"))
    p.add_argument("--out", default="runs/sched_trust")
    args = p.parse_args()
    warm_start_and_train(args.source, args.config, args.out, "with_trust_features")


if __name__ == "__main__":
    main()
