"""Trace a pretrained optimizer's effective per-tensor step on evaluation-suite tasks.

For every tensor, prints ``RMS(update)``, ``RMS(d)`` and ``RMS(g)`` every T/10 steps, where ``d`` is
Adam's bias-corrected direction on the same gradients: for a nominal-Adam learned optimizer the
ratio RMS(update)/RMS(d) is its effective learning rate on that tensor.

    python meta_runs/effective_steps.py indist/mlp_ae-600003,indist/quadratic-600001 [--pretrained scheduled]
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax

import learned_opt
from eval.suites import get_suite


def trace(name: str, pretrained: str) -> None:
    tasks = {t.name: t for s in ("indist", "ood") for t in get_suite(s).resolve()}
    st = tasks[name]
    task, horizon = st.build(), st.num_steps
    opt, adam_dir = learned_opt.load_pretrained(pretrained, num_steps=horizon), optax.scale_by_adam()
    params = task.init(jax.random.PRNGKey(0))
    state, adam_state = opt.init(params), adam_dir.init(params)
    batches = iter(task.datasets.train) if task.datasets is not None else iter(lambda: None, 0)

    def rms(x):
        return jnp.sqrt(jnp.mean(jnp.square(x)))

    @jax.jit
    def step(params, state, adam_state, batch, key):
        loss, grads = jax.value_and_grad(task.loss)(params, key, batch)
        updates, state = opt.update(grads, state, params, loss=loss)
        d, adam_state = adam_dir.update(grads, adam_state, params)
        stats = jax.tree_util.tree_map(lambda u, d, g: jnp.stack([rms(u), rms(d), rms(g)]), updates, d, grads)
        return optax.apply_updates(params, updates), state, adam_state, loss, stats

    print(f"== {name}: {horizon} steps, optimizer {pretrained!r}")
    for t in range(horizon):
        params, state, adam_state, loss, stats = step(params, state, adam_state, next(batches),
                                                      jax.random.PRNGKey(t))
        if t % max(1, horizon // 10) == 0 or t == horizon - 1:
            cols = " ".join(f"{jax.tree_util.keystr(path)}: u {float(v[0]):.1e} d {float(v[1]):.1e} "
                            f"g {float(v[2]):.1e}" for path, v in jax.tree_util.tree_leaves_with_path(stats))
            print(f"t={t:5d} loss {float(loss):.4f} | {cols}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("tasks", help="comma-separated suite task names (indist/..., ood_.../...)")
    p.add_argument("--pretrained", default="default")
    args = p.parse_args()
    for name in args.tasks.split(","):
        trace(name, args.pretrained)


if __name__ == "__main__":
    main()
