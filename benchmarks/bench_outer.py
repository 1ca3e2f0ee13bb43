"""Outer-training throughput: inner steps per second and first-step compile time.

Configurations (8 vmapped tasks, 20 inner steps per outer step, trajectories of 200 steps, outer
Adam + global-norm clipping — the trainer's jitted outer step, metrics fetched to the host each
step as the trainer does):

  (a) PES + per-parameter MLP optimizer on a 10-dim quadratic family
  (b) truncated ES + MLP optimizer on the same
  (c) PES + MLP optimizer on an image MLP 8x8x1 -> 32 -> 10, batch 128, ReLU (digits)
  (d) PES + hierarchical optimizer on (c)
  (e) truncated backprop + MLP optimizer on (c)

"Inner steps" counts every inner update of every trajectory, i.e. N x branches x K per outer
step (ES/PES run a + and a - trajectory per task: 320 per outer step; truncated backprop 160);
``task_steps_per_s`` counts each task once (N x K). Steady-state figures are the median over
``--repeats`` timed blocks of ``--steps`` outer steps each. Compile time is lower+compile of the
outer step in a fresh process-level jit cache (first call), optionally with JAX's persistent
compilation cache (``--compile-cache DIR``; a second run then reports the cached figure).

FLOP roof of (c): ~10 MFLOP per inner step (MLP optimizer ~3.4 kFLOP per parameter x 2410
parameters + forward/backward of the classifier) at ~100 GFLOP/s -> ~10k inner steps/s.

(e) runs with the estimator's default remat policy (``TrainConfig.remat="auto"`` -> ``"full"``);
``--remat`` picks another; ``benchmarks/profile_backprop.py`` breaks (e) down op by op.

    python benchmarks/bench_outer.py [--configs a,b,c,d,e] [--steps 10] [--repeats 3] [--remat auto]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGETS = {"a": 100_000, "c": 5_000, "d": 3_000, "e": 1_200}
REFERENCE = {"a": 41_000, "b": 39_000, "c": 2_600, "d": 1_600, "e": 600}
ROOF_C = 10_000
CONFIGS = {
    "a": ("PES + MLP lopt, quadratic d=10", "pes", "mlp", "quadratic"),
    "b": ("trunc. ES + MLP lopt, quadratic d=10", "es", "mlp", "quadratic"),
    "c": ("PES + MLP lopt, image MLP 64-32-10", "pes", "mlp", "image_mlp"),
    "d": ("PES + hierarchical, image MLP 64-32-10", "pes", "hierarchical", "image_mlp"),
    "e": ("TBPTT + MLP lopt, image MLP 64-32-10", "tbptt", "mlp", "image_mlp"),
}


def build(letter: str, remat: str = "auto"):
    """``(estimator, initial train state, outer step)`` of configuration ``letter``; ``remat`` is
    the estimator's remat policy (``TrainConfig.remat``; only the backprop configs use it)."""
    from learned_opt.registry import get_optimizer
    from outer_train.config import TrainConfig
    from outer_train.estimators import GradientEstimator
    from outer_train.trainer import init_state, make_outer_optimizer, make_outer_step
    from outer_train.truncation import ConstantSchedule
    from outer_train.unroll import InnerProblem
    from tasks.families import ImageMLPFamily, QuadraticFamily

    _, estimator, optimizer, task = CONFIGS[letter]
    if task == "quadratic":
        family = QuadraticFamily(dim=10)
    else:
        family = ImageMLPFamily(dataset="digits", image_size=8, hidden_sizes=(32,), batch_size=128,
                                activations=("relu",), initializers=("he_normal",))
    lopt = get_optimizer(optimizer)
    problem = InnerProblem(family, lopt, ConstantSchedule(200))
    est = GradientEstimator(estimator, problem, num_tasks=8, unroll_length=20, sigma=0.01, remat=remat)
    config = TrainConfig(optimizer=optimizer, estimator=estimator, outer_lr=1e-3, grad_clip=1.0,
                         progress=False, remat=remat)
    outer_opt = make_outer_optimizer(config)
    state = init_state(config, lopt, est, outer_opt)
    return est, state, make_outer_step(est, outer_opt)


def measure(letter: str, steps: int, repeats: int, remat: str = "auto") -> dict:
    import jax
    est, state, outer_step = build(letter, remat)
    jax.block_until_ready(state)
    t0 = time.perf_counter()
    compiled = jax.jit(outer_step).lower(state).compile()
    compile_s = time.perf_counter() - t0
    state, m = compiled(state)  # warm-up (first execution)
    jax.device_get(m)
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            state, m = compiled(state)
            jax.device_get(m)  # the trainer fetches metrics every step
        dt = time.perf_counter() - t0
        rates.append(est.inner_steps * steps / dt)
    rate = statistics.median(rates)
    branches = est.num_branches
    return {"config": letter, "description": CONFIGS[letter][0], "compile_s": compile_s,
            "inner_steps_per_s": rate, "task_steps_per_s": rate / branches,
            "inner_steps_per_outer_step": est.inner_steps, "rates": rates,
            "meta_loss_last": float(m["meta_loss"]), "target": TARGETS.get(letter),
            "remat": est.remat_policy,
            "reference_framework": REFERENCE.get(letter)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--configs", default="a,b,c,d,e")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--compile-cache", default=None)
    p.add_argument("--remat", default="auto",
                   help="TrainConfig.remat of the backprop config (e): auto | none | full | dots")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_outer.json"))
    args = p.parse_args(argv)
    import jax
    if args.compile_cache:
        jax.config.update("jax_compilation_cache_dir", args.compile_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    rows = []
    for letter in args.configs.split(","):
        row = measure(letter.strip(), args.steps, args.repeats, args.remat)
        rows.append(row)
        print(f"({row['config']}) {row['description']:<40} compile {row['compile_s']:6.1f} s  "
              f"{row['inner_steps_per_s']:10.0f} inner steps/s  ({row['task_steps_per_s']:.0f} task-steps/s)",
              flush=True)
    print()
    print("| config | description | compile s | inner steps/s | task steps/s | target | vs reference |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        tgt = f"{r['target']:,}" if r["target"] else "-"
        ref = f"{r['inner_steps_per_s'] / r['reference_framework']:.2f}x" if r["reference_framework"] else "-"
        print(f"| ({r['config']}) | {r['description']} | {r['compile_s']:.1f} | {r['inner_steps_per_s']:,.0f} | "
              f"{r['task_steps_per_s']:,.0f} | {tgt} | {ref} |")
    for r in rows:
        if r["config"] == "c":
            r["roof_fraction"] = r["inner_steps_per_s"] / ROOF_C
            print(f"\n(c) reaches {r['roof_fraction']:.1%} of the ~{ROOF_C:,} inner steps/s FLOP roof")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "steps": args.steps, "repeats": args.repeats,
                               "load_average_1min": load, "jax": jax.__version__,
                               "compile_cache": bool(args.compile_cache)}, indent=1) + "\n")
    print(f"\nwrote {out} (1-min load average during run: {load})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
