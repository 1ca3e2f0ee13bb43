"""Overhead of ``learned_opt.minimize`` over raw scipy, and per-evaluation time vs dict-minimize.

Problem: a 100,450-parameter float64 dict with 4 keys (``w1`` 200×400, ``b1`` 400, ``w2`` 400×50,
``b2`` 50) and a deliberately cheap objective (elementwise, O(n)), so that any per-evaluation
bookkeeping shows up:

    f(x) = Σ_k Σ_i ½ d_ki (x_ki − c_ki)² + ¼ γ x_ki⁴ + 0.01 (Σ x_w1)(Σ x_b2)

Runs, each L-BFGS-B for a fixed number of iterations (identical work: same iterates, same nfev):

* ``raw``: ``scipy.optimize.minimize`` on a hand-packed vector with a hand-written jitted
  value-and-grad (slices of the vector inside ``jax.jit``) — the baseline;
* ``learned_opt``: ``learned_opt.minimize(f, x0_dict, method="L-BFGS-B")``;
* ``dict_minimize``: ``dict_minimize.jax_api.minimize`` with a jitted value-and-grad on dicts
  (if the package is installed).

Each comparison is run twice: L-BFGS-B end to end, and "evaluations only" — a no-op custom scipy
method that just calls the objective (value and gradient) at ``--probe-evals`` points, so the
time per call is the cost of one function evaluation through each runner's wrapper without the
optimizer's own O(mn) work.

BLAS is limited to one thread for every runner alike (threadpoolctl, if installed). Each run is
repeated (interleaved, in rotating order) and the median wall time reported, with the ratio to ``raw``
measured in the same process. A second, heavier objective (a 2-layer tanh regression on 256
examples with the same parameters) shows the overhead on a realistic per-evaluation cost.
Writes ``benchmarks/results/bench_minimize.json``.

Usage: ``python benchmarks/bench_minimize.py [--repeats 11] [--maxiter 30]``
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize as sopt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.machine import Window, load_now  # noqa: E402

SHAPES = {"w1": (200, 400), "b1": (400,), "w2": (400, 50), "b2": (50,)}


def make_problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    d = {k: rng.uniform(0.5, 2.0, s) for k, s in SHAPES.items()}
    c = {k: rng.standard_normal(s) for k, s in SHAPES.items()}
    x0 = {k: 0.1 * rng.standard_normal(s) for k, s in SHAPES.items()}
    data_x = rng.standard_normal((256, 200))
    data_y = rng.standard_normal((256, 50))
    return d, c, x0, data_x, data_y


def make_cheap(d, c):
    dj = {k: jnp.asarray(v) for k, v in d.items()}
    cj = {k: jnp.asarray(v) for k, v in c.items()}

    def f(x):
        total = 0.0
        for k in SHAPES:
            total = total + jnp.sum(0.5 * dj[k] * (x[k] - cj[k]) ** 2 + 0.025 * x[k] ** 4)
        return total + 0.01 * jnp.sum(x["w1"]) * jnp.sum(x["b2"])
    return f


def make_mlp(data_x, data_y):
    X, Y = jnp.asarray(data_x), jnp.asarray(data_y)

    def f(p):
        h = jnp.tanh(X @ p["w1"] + p["b1"])
        out = h @ p["w2"] + p["b2"]
        return jnp.mean((out - Y) ** 2) + 1e-4 * (jnp.sum(p["w1"] ** 2) + jnp.sum(p["w2"] ** 2))
    return f


def raw_runner(f, x0, maxiter, method="L-BFGS-B"):
    """What a user writes by hand: pack, slice inside jit, value_and_grad, scipy."""
    keys = list(SHAPES)
    sizes = [int(np.prod(SHAPES[k])) for k in keys]
    offs = np.concatenate([[0], np.cumsum(sizes)])

    def f_vec(v):
        x = {k: v[offs[i]:offs[i + 1]].reshape(SHAPES[k]) for i, k in enumerate(keys)}
        return f(x)

    vg = jax.jit(jax.value_and_grad(f_vec))
    v0 = np.concatenate([x0[k].reshape(-1) for k in keys])
    count = [0]

    def fun(v):
        count[0] += 1
        val, g = vg(v)
        return float(val), np.asarray(g, dtype=np.float64)

    def run():
        count[0] = 0
        r = sopt.minimize(fun, v0, jac=True, method=method, options=None if callable(method) else {"maxiter": maxiter})
        return r.fun, r.nfev
    fun(v0)  # compile outside the timing
    return run


def lo_runner(f, x0, maxiter, method="L-BFGS-B"):
    from learned_opt import minimize

    def run():
        r = minimize(f, x0, method=method, options=None if callable(method) else {"maxiter": maxiter})
        return r.fun, r.nfev
    minimize(f, x0, method="L-BFGS-B", options={"maxiter": 1})  # compile outside the timing
    return run


def dm_runner(f, x0, maxiter, method="L-BFGS-B"):
    try:
        from dict_minimize.jax_api import minimize as dm_minimize
    except ImportError:
        return None
    from collections import OrderedDict
    vg = jax.jit(jax.value_and_grad(f))
    count = [0]

    def fun(x):
        count[0] += 1
        return vg(x)

    x0j = OrderedDict((k, jnp.asarray(v)) for k, v in x0.items())

    def run():
        count[0] = 0
        x = dm_minimize(fun, x0j, method=method, options=None if callable(method) else {"maxiter": maxiter})
        return float(f(x)), count[0]
    fun(x0j)
    return run


def probe_method(n_evals):
    """A custom scipy method that only evaluates fun (jac=True: value and gradient) at ``n_evals``
    points x0 − t·(1, 1, ...), t = 0, 1e-3, ... — the optimizer costs nothing, so wall/n_evals is the
    cost of one evaluation through each runner's wrapper."""
    def probe(fun, x0, args=(), jac=None, **_):
        best_f, best_x = np.inf, x0
        for i in range(n_evals):
            x = x0 - 1e-3 * i
            f = fun(x, *args)
            jac(x, *args)
            if f < best_f:
                best_f, best_x = f, x
        return sopt.OptimizeResult(x=best_x, fun=best_f, nfev=n_evals, njev=n_evals, nit=n_evals,
                                   success=True, status=0, message="probe")
    return probe


def bench(name, f, x0, maxiter, repeats, method="L-BFGS-B"):
    runners = {"raw": raw_runner(f, x0, maxiter, method), "learned_opt": lo_runner(f, x0, maxiter, method)}
    dm = dm_runner(f, x0, maxiter, method)
    if dm is not None:
        runners["dict_minimize"] = dm
    times = {k: [] for k in runners}
    cpu = {k: [] for k in runners}
    out = {}
    names = list(runners)
    for i in range(repeats):  # interleaved, order rotated, so load drift hits every runner alike
        for k in names[i % len(names):] + names[:i % len(names)]:
            run = runners[k]
            t, c0 = time.perf_counter(), time.process_time()
            fun, nfev = run()
            times[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c0)
            out[k] = (fun, nfev)
    rows = {}
    base = statistics.median(times["raw"])
    for k in runners:
        med = statistics.median(times[k])
        paired = statistics.median([a / b for a, b in zip(times[k], times["raw"])])
        rows[k] = {"median_s": med, "min_s": min(times[k]), "median_cpu_s": statistics.median(cpu[k]),
                   "nfev": int(out[k][1]), "fun": float(out[k][0]),
                   "per_eval_ms": 1e3 * med / max(1, out[k][1]), "ratio_to_raw": med / base,
                   "overhead_pct": 100.0 * (med / base - 1.0),
                   "paired_ratio_median": paired, "paired_overhead_pct": 100.0 * (paired - 1.0),
                   "cpu_overhead_pct": 100.0 * (statistics.median(cpu[k]) / statistics.median(cpu["raw"]) - 1.0),
                   "times_s": times[k]}
    return {"problem": name, "method": "probe (evaluations only)" if callable(method) else method,
            "n": int(sum(np.prod(s) for s in SHAPES.values())), "maxiter": maxiter,
            "repeats": repeats, "runs": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--maxiter", type=int, default=30)
    ap.add_argument("--probe-evals", type=int, default=200)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "bench_minimize.json"))
    ns = ap.parse_args(argv)
    try:  # scipy's L-BFGS-B with multithreaded BLAS is many times slower on a loaded machine
        from threadpoolctl import threadpool_limits
        blas = threadpool_limits(limits=1, user_api="blas")
    except ImportError:
        blas = contextlib.nullcontext()
    idle_load = load_now()
    with jax.enable_x64(True), blas, Window(idle_load=idle_load) as window:
        d, c, x0, dx, dy = make_problem()
        cheap, mlp = make_cheap(d, c), make_mlp(dx, dy)
        probe = probe_method(ns.probe_evals)
        results = [bench("cheap: L-BFGS-B end to end", cheap, x0, ns.maxiter, ns.repeats),
                   bench("cheap: evaluations only", cheap, x0, ns.maxiter, ns.repeats, probe),
                   bench("tanh regression: L-BFGS-B end to end", mlp, x0, ns.maxiter, ns.repeats),
                   bench("tanh regression: evaluations only", mlp, x0, ns.maxiter, ns.repeats, probe)]
    print(f"{results[0]['n']} float64 parameters in 4 keys; L-BFGS-B maxiter={ns.maxiter}; evaluations-only runs "
          f"call fun {ns.probe_evals} times through a no-op custom scipy method; median of {ns.repeats} "
          "interleaved repeats")
    print("vs raw = median wall time / median raw wall time − 1; paired = median over repeats of the "
          "ratio to the raw run of the same repeat; cpu = median process CPU time / raw's − 1")
    print(f"{'problem':38s} {'runner':14s} {'median s':>9s} {'nfev':>5s} {'ms/eval':>8s} {'vs raw':>8s} "
          f"{'paired':>8s} {'cpu':>8s}")
    for res in results:
        for k, r in res["runs"].items():
            print(f"{res['problem']:38s} {k:14s} {r['median_s']:9.4f} {r['nfev']:5d} {r['per_eval_ms']:8.3f} "
                  f"{r['overhead_pct']:+7.1f}% {r['paired_overhead_pct']:+7.1f}% {r['cpu_overhead_pct']:+7.1f}%")
    for res in results:
        fr = {k: r["fun"] for k, r in res["runs"].items()}
        if not np.allclose(fr["raw"], fr["learned_opt"], rtol=1e-10):
            print(f"WARNING: different final values on {res['problem']}: {fr}")
    machine = window.summary()
    print(f"machine: load {machine['load_1min_before_benchmark']:.2f} before, steal {100 * machine['cpu_steal']:.1f}%: "
          f"{'quiet' if machine['quiet'] else 'BUSY (figures are lower bounds)'}")
    payload = {"benchmark": "bench_minimize", "platform": platform.platform(), "machine": machine,
               "quiet": machine["quiet"], "cpu_count": os.cpu_count(),
               "jax": jax.__version__,
               "scipy": sopt.__dict__.get("__version__", None) or __import__("scipy").__version__,
               "target": "learned_opt overhead vs raw <= 5%", "results": results}
    os.makedirs(os.path.dirname(ns.out), exist_ok=True)
    with open(ns.out, "w") as fh:
        json.dump(payload, fh, indent=2)
    print(f"wrote {ns.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
