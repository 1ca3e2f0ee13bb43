"""Evaluation-runner speed: what the design choices of ``eval.runner`` buy.

(a) a tuned-Adam sweep (9 learning rates) as ONE vmapped ``lax.scan`` program vs 9 separately
    compiled single-rate programs (compile + run, 3 seeds each) on an image-MLP task;
(b) the same first-order run through the runner's jitted scan vs ``learned_opt.minimize``'s
    per-step optax loop (full-batch logistic regression, 200 steps, run time after compile);
(c) L-BFGS-B through the runner with single-threaded BLAS (threadpoolctl) vs the default
    BLAS threading, on a 16k-parameter MLP autoencoder task.

Prints a table and writes ``benchmarks/results/bench_eval.json``. Medians over ``--repeats``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time

import jax
import optax


def _median_time(fn, repeats):
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def bench_sweep(repeats: int) -> dict:
    from eval import baselines
    from eval.runner import prepare_task, run_first_order
    from tasks.image_mlp import ImageMLPTask

    task = ImageMLPTask(dataset="digits", hidden_sizes=(32,), batch_size=64)
    rates = baselines.DEFAULT_LEARNING_RATES
    seeds = [0, 1, 2]

    def vmapped():
        setup = prepare_task(task, 200)
        run_first_order(setup, baselines.adam_sweep(rates), seeds)

    def separate():
        setup = prepare_task(task, 200)
        for r in rates:
            run_first_order(setup, baselines.adam_fixed(r), seeds)

    vmapped()  # warm the data/init caches (not the programs: each call builds new ones)
    tv = _median_time(vmapped, repeats)
    ts = _median_time(separate, repeats)
    return {"vmapped_sweep_s": tv, "separate_programs_s": ts, "ratio": ts / tv}


def bench_scan_vs_minimize(repeats: int) -> dict:
    from learned_opt import minimize
    from eval.runner import EVAL_KEY_SEED, init_params, prepare_task, run_first_order
    from eval.methods import optax_method
    from tasks.regression import LogisticRegressionTask

    task = LogisticRegressionTask(num_examples=512, dim=16)
    T = 200
    setup = prepare_task(task, T)
    m = optax_method(optax.adam(0.05))
    run_first_order(setup, m, [0])  # compile once; run_seconds below excludes compile
    scan_run = statistics.median(run_first_order(setup, m, [0]).run_seconds for _ in range(repeats))
    full = task.datasets.train.full()
    key = jax.random.PRNGKey(EVAL_KEY_SEED)

    def fun(p):
        return task.loss(p, key, full)

    p0 = init_params(task, 0)
    opt = optax.adam(0.05)
    minimize(fun, p0, method=opt, options={"maxiter": T})  # compile
    mt = _median_time(lambda: minimize(fun, p0, method=opt, options={"maxiter": T}), repeats)
    return {"scan_run_s": scan_run, "minimize_loop_s": mt, "ratio": mt / scan_run}


def bench_lbfgs_blas(repeats: int) -> dict:
    import eval.runner as R
    from tasks.autoencoder import MLPAutoencoderTask

    task = MLPAutoencoderTask(hidden_sizes=(128, 32))
    setup = R.prepare_task(task, 200)
    R.run_scipy(setup, R.as_method("L-BFGS-B"), [0])  # compile
    one = _median_time(lambda: R.run_scipy(setup, R.as_method("L-BFGS-B"), [0]), repeats)
    orig = R.single_threaded_blas
    R.single_threaded_blas = contextlib.nullcontext
    try:
        default = _median_time(lambda: R.run_scipy(setup, R.as_method("L-BFGS-B"), [0]), repeats)
    finally:
        R.single_threaded_blas = orig
    return {"num_params": setup.num_params, "single_thread_blas_s": one, "default_blas_s": default,
            "ratio": default / one}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    out = {"sweep": bench_sweep(args.repeats), "scan_vs_minimize": bench_scan_vs_minimize(args.repeats),
           "lbfgs_blas": bench_lbfgs_blas(args.repeats), "repeats": args.repeats,
           "cpu_count": os.cpu_count()}
    print(f"{'benchmark':<34}{'baseline s':>12}{'ours s':>10}{'ratio':>8}")
    print(f"{'9-rate Adam sweep: separate/vmap':<34}{out['sweep']['separate_programs_s']:>12.2f}"
          f"{out['sweep']['vmapped_sweep_s']:>10.2f}{out['sweep']['ratio']:>8.2f}")
    print(f"{'200 steps: minimize loop/scan':<34}{out['scan_vs_minimize']['minimize_loop_s']:>12.3f}"
          f"{out['scan_vs_minimize']['scan_run_s']:>10.3f}{out['scan_vs_minimize']['ratio']:>8.1f}")
    print(f"{'L-BFGS-B: default/1-thread BLAS':<34}{out['lbfgs_blas']['default_blas_s']:>12.2f}"
          f"{out['lbfgs_blas']['single_thread_blas_s']:>10.2f}{out['lbfgs_blas']['ratio']:>8.2f}")
    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    path = os.path.join(os.path.dirname(__file__), "results", "bench_eval.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
