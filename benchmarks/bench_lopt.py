"""Per-step cost of each learned optimizer relative to optax.adam.

One training step = forward + backward of a ~1.07M-parameter MLP (784-1024-256-10, batch 128,
softmax cross-entropy) + the optimizer update + applying it, all in one jitted function. Every
optimizer is timed in the same process, interleaved round-robin over repetitions (so load drift
hits all of them alike); the reported time is the median over repetitions of the mean step time
of a block of steps. Ratios are against optax.adam measured in the same run.

The per-parameter work of a learned optimizer does not depend on the batch size while the
forward/backward pass grows with it, so the ratio is reported for several batch sizes
(default 128 and 1024).

Usage: python benchmarks/bench_lopt.py [--reps 9] [--steps 5] [--batches 128 1024]
Writes benchmarks/results/bench_lopt.json and prints a table; each batch size's timed window
records the load average and CPU steal (:mod:`benchmarks.machine`) and the file says whether all
were quiet.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import learned_opt  # noqa: E402
from benchmarks.machine import Window, load_now  # noqa: E402
from learned_opt.registry import get_optimizer  # noqa: E402

TARGETS = {"mlp": 6.0, "factored_mlp": 2.5, "hierarchical": 8.0}
SIZES = (784, 1024, 256, 10)


def init_mlp(key):
    params = {}
    keys = jax.random.split(key, len(SIZES) - 1)
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        params[f"layer{i}"] = {"w": jax.random.normal(keys[i], (a, b)) / np.sqrt(a), "b": jnp.zeros((b,))}
    return params


def loss_fn(params, x, y):
    h = x
    for i in range(len(SIZES) - 1):
        layer = params[f"layer{i}"]
        h = h @ layer["w"] + layer["b"]
        if i < len(SIZES) - 2:
            h = jax.nn.relu(h)
    return optax.softmax_cross_entropy_with_integer_labels(h, y).mean()


def make_step(tx, extra_args: bool):
    def step(params, state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        if extra_args:
            updates, state = tx.update(grads, state, params, loss=loss)
        else:
            updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss
    return jax.jit(step, donate_argnums=(0, 1))


def run_batch(methods, batch, args, kx, ky, kp):
    x = jax.random.normal(kx, (batch, SIZES[0]))
    y = jax.random.randint(ky, (batch,), 0, SIZES[-1])
    runners, compile_s = {}, {}
    for name, (tx, extra, _) in methods.items():
        step = make_step(tx, extra)
        params = init_mlp(kp)
        state = tx.init(params)
        t0 = time.perf_counter()
        params, state, loss = step(params, state, x, y)
        jax.block_until_ready(loss)
        compile_s[name] = time.perf_counter() - t0
        runners[name] = [step, params, state]
    times = {name: [] for name in methods}
    for _ in range(args.reps):
        for name, r in runners.items():
            step, params, state = r
            t0 = time.perf_counter()
            for _ in range(args.steps):
                params, state, loss = step(params, state, x, y)
            jax.block_until_ready((params, loss))
            times[name].append((time.perf_counter() - t0) / args.steps)
            r[1], r[2] = params, state
    base = float(np.median(times["optax.adam"]))
    rows = []
    for name, (_, _, n_meta) in methods.items():
        med = float(np.median(times[name]))
        ratio = med / base
        target = TARGETS.get(name)
        rows.append({"optimizer": name, "meta_params": n_meta, "median_step_ms": 1e3 * med,
                     "iqr_step_ms": 1e3 * float(np.subtract(*np.percentile(times[name], [75, 25]))),
                     "ratio_vs_adam": ratio, "target_ratio": target,
                     "meets_target": None if target is None else bool(ratio <= target),
                     "first_call_s": compile_s[name]})
    return rows


def print_table(rows, n_params, batch, args):
    print(f"\nmodel: MLP {'-'.join(map(str, SIZES))} ({n_params:,} params), batch {batch}; "
          f"{args.reps} reps x {args.steps} steps; {jax.device_count()} {jax.default_backend()} device(s); "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'optimizer':<14}{'meta-params':>12}{'step ms':>10}{'x adam':>8}{'target':>8}{'ok':>5}{'compile s':>11}")
    for r in rows:
        tgt = "" if r["target_ratio"] is None else f"{r['target_ratio']:.1f}"
        ok = "" if r["meets_target"] is None else ("yes" if r["meets_target"] else "NO")
        print(f"{r['optimizer']:<14}{r['meta_params']:>12,}{r['median_step_ms']:>10.2f}{r['ratio_vs_adam']:>8.2f}"
              f"{tgt:>8}{ok:>5}{r['first_call_s']:>11.2f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--steps", type=int, default=5, help="steps per timed block")
    ap.add_argument("--batches", type=int, nargs="+", default=[128, 1024])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "bench_lopt.json"))
    args = ap.parse_args(argv)
    idle_load = load_now()  # before compiling: the windows' own load average includes compilation

    key = jax.random.PRNGKey(0)
    kx, ky, kp, kt = jax.random.split(key, 4)
    n_params = sum(int(np.size(l)) for l in jax.tree_util.tree_leaves(init_mlp(kp)))
    methods = {"optax.adam": (optax.adam(1e-3), False, 0)}
    for name in ("adam", "sgd", "mlp", "factored_mlp", "hierarchical", "scheduled_adam"):
        lopt = get_optimizer(name)
        theta = lopt.init(kt)
        methods[name] = (lopt.opt_fn(theta, num_steps=10_000), True, learned_opt.num_meta_params(theta))
    runs = []
    for batch in args.batches:
        with Window(idle_load=idle_load) as window:
            results = run_batch(methods, batch, args, kx, ky, kp)
        runs.append({"batch": batch, "results": results, "machine": window.summary()})
        print_table(runs[-1]["results"], n_params, batch, args)
        if not window.summary()["quiet"]:
            print(f"BUSY MACHINE (load {idle_load:.1f} before the benchmark): "
                  f"these times are not speed measurements; the ratios are less affected")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "bench_lopt", "model": {"sizes": SIZES, "num_params": n_params},
        "reps": args.reps, "steps_per_rep": args.steps, "baseline": "optax.adam",
        "jax": jax.__version__, "backend": jax.default_backend(), "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "quiet": all(r["machine"]["quiet"] for r in runs), "platform": platform.platform(), "runs": runs}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
