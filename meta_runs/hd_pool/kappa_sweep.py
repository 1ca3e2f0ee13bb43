"""Select the nominal controller's gain κ on the meta-training split (never on an eval suite).

ScheduledAdamLOpt at its initial θ (Adam at 0.01, trust inputs, step controller with
``hypergradient_gain=κ``) runs 200 steps on every ``stride``-th task of ``train_pool`` (the
tasks meta-training uses), 2 seeds each; the score is the final evaluation loss normalized with
the taskset's stored statistics (0 = the best tuned baseline, 1 = the initial loss, clipped at 2).

    python meta_runs/hd_pool/kappa_sweep.py 0,0.03,0.1,0.3 3    # recorded in kappa_sweep_stride3.{txt,json}
"""
from __future__ import annotations

import json
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np

import tasksets
from learned_opt.inner_loop import optax_scan
from learned_opt.scheduled_adam import ScheduledAdamLOpt
from tasksets.baselines import _eval_batch, _eval_fn

STEPS = 200
SEEDS = (0, 1)


def final_losses(task, opt) -> list[float]:
    """Final evaluation loss of ``opt`` on ``task`` for each seed (minibatches as in meta-training)."""
    train = task.datasets.train if task.datasets is not None else None
    arrays = None if train is None else {k: jnp.asarray(v) for k, v in train.arrays.items()}
    batch_size = 0 if train is None else train.batch_size
    n = 0 if arrays is None else next(iter(arrays.values())).shape[0]
    evaluate = _eval_fn(task, _eval_batch(task, 2048))

    def run(seed):
        k_init, k_run = jax.random.split(jax.random.PRNGKey(seed))

        def loss_fn(p, t):
            kb, kl = jax.random.split(jax.random.fold_in(k_run, t))
            batch = None
            if arrays is not None:
                idx = jax.random.randint(kb, (batch_size,), 0, n)
                batch = {k: a[idx] for k, a in arrays.items()}
            return task.loss(p, kl, batch)

        return optax_scan(opt, loss_fn, task.init(k_init), jnp.arange(STEPS), num_steps=STEPS,
                          record_every=STEPS, record=evaluate).records[-1]

    return [float(jax.jit(run)(s)) for s in SEEDS]


def main(gains: list[float], stride: int) -> None:
    cfgs = tasksets.load_taskset("train_pool")[::stride]
    scores: dict[float, list[float]] = {g: [] for g in gains}
    families = []
    for cfg in cfgs:
        task = tasksets.build_task(cfg)
        stats = tasksets.lookup_stats(cfg)
        lo_init, lo_best = float(stats["loss_init"]), float(stats["loss_best"])
        families.append(cfg.get("family", "?"))
        for g in gains:
            lopt = ScheduledAdamLOpt(learning_rate=0.01, max_log_step=6.0, max_correction=1.0, trust_features=True,
                                     step_controller=g > 0, hypergradient_gain=g)
            finals = final_losses(task, lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)), num_steps=STEPS))
            norm = [min(2.0, (f - lo_best) / (lo_init - lo_best)) if math.isfinite(f) else 2.0 for f in finals]
            scores[g].append(float(np.mean(norm)))
        print(families[-1], " ".join(f"{g}:{scores[g][-1]:.3f}" for g in gains), flush=True)
    print("mean", {g: round(float(np.mean(v)), 4) for g, v in scores.items()})
    for fam in sorted(set(families)):
        idx = [i for i, f in enumerate(families) if f == fam]
        print(fam, {g: round(float(np.mean([scores[g][i] for i in idx])), 4) for g in gains})
    with open(f"kappa_sweep_stride{stride}.json", "w", encoding="utf-8") as f:
        json.dump({"gains": gains, "families": families, "scores": {str(g): v for g, v in scores.items()}}, f)


if __name__ == "__main__":
    main([float(x) for x in sys.argv[1].split(",")], int(sys.argv[2]) if len(sys.argv) > 2 else 3)
