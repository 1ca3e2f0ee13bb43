"""Per-step cost of the TaskSet-style families: jitted forward+backward time per sampled task.

For every family, ``--num-tasks`` cfgs (seeds 0, 1, ...) are built; for each task
``jax.jit(jax.value_and_grad(task.loss))`` is compiled on one training batch and timed as the
median of ``--repeats`` calls (each blocked until ready).  The table reports, per family, the
median / 90th-percentile / max step time, how many tasks are under the cap (default 5 ms), the
median compile time and the median step time as a ratio to a reference task measured in the same
run (an MLP with one hidden layer of 32 units on 8x8 digits, batch 32).

    python benchmarks/bench_tasksets.py                     # 50 tasks per family
    python benchmarks/bench_tasksets.py --num-tasks 10 --families mlp_family conv_family

Writes ``benchmarks/results/bench_tasksets.json``. The reference and every family are timed in a
window that records the load average and CPU steal (:mod:`benchmarks.machine`): each row gets its
window's summary under ``"machine"``, the file's ``"machine"`` holds the whole run's summary next to
the platform, and ``"quiet"`` says whether every window was quiet. The load that decides is the one
before the benchmark started (its own compilation raises the 1-minute average). Families timed on
a busy machine are marked ``*`` in the table, and the verdict is printed under it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tasksets  # noqa: E402
from benchmarks.machine import Window, describe, load_now  # noqa: E402

REFERENCE_CFG = {
    "family": "mlp_family", "dataset": "digits", "image_size": None, "hidden_sizes": [32],
    "activation": "relu", "w_init": "he_normal", "use_bias": True, "layer_norm": False,
    "dropout_rate": 0.0, "l2": 0.0, "batch_size": 32, "center": True, "data_seed": 0,
}


def time_step(cfg: dict, repeats: int) -> dict:
    """Compile and time one jitted value_and_grad step of the task ``cfg``."""
    task = tasksets.build_task(cfg)
    params = task.init(jax.random.PRNGKey(0))
    batch = None if task.datasets is None else jax.device_put(next(iter(task.datasets.train)))
    key = jax.random.PRNGKey(1)
    step = jax.jit(jax.value_and_grad(task.loss))
    t0 = time.perf_counter()
    jax.block_until_ready(step(params, key, batch))
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(step(params, key, batch))
        times.append(time.perf_counter() - t0)
    n_params = sum(int(np.size(x)) for x in jax.tree_util.tree_leaves(params))
    return {"ms": 1e3 * statistics.median(times), "compile_s": compile_s, "num_params": n_params}


def time_families(fams, args, ref_ms: float, idle_load: float) -> tuple[list, dict]:
    """Time ``args.num_tasks`` sampled tasks of every family, each family in its own window."""
    rows, records = [], {}
    for fam in fams:
        recs = []
        t_fam = time.perf_counter()
        with Window(idle_load=idle_load) as window:
            for seed in range(args.num_tasks):
                cfg = tasksets.sample_config(fam, seed)
                try:
                    r = time_step(cfg, args.repeats)
                except Exception as err:  # noqa: BLE001 -- report, do not hide
                    r = {"error": f"{type(err).__name__}: {err}"}
                r.update(seed=seed, task_id=tasksets.task_id(cfg))
                recs.append(r)
        ok = [r for r in recs if "ms" in r]
        ms = np.array([r["ms"] for r in ok]) if ok else np.array([np.nan])
        row = {
            "family": fam, "tasks": len(recs), "errors": len(recs) - len(ok),
            "median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
            "max_ms": float(np.max(ms)), "under_cap": int(np.sum(ms <= args.cap_ms)),
            "median_compile_s": float(np.median([r["compile_s"] for r in ok])) if ok else float("nan"),
            "median_ratio_to_reference": float(np.median(ms) / ref_ms),
            "max_params": int(max((r["num_params"] for r in ok), default=0)),
            "wall_s": time.perf_counter() - t_fam, "machine": window.summary(),
        }
        rows.append(row)
        records[fam] = recs
        print(f"{fam}: done in {row['wall_s']:.0f}s", flush=True)
    return rows, records


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-tasks", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--cap-ms", type=float, default=5.0)
    parser.add_argument("--families", nargs="+", default=None)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" /
                                             "bench_tasksets.json"))
    args = parser.parse_args(argv)
    fams = args.families or tasksets.families()
    idle_load = load_now()  # before compiling: the windows' own load average includes compilation

    with Window(idle_load=idle_load) as whole:
        with Window(idle_load=idle_load) as window:
            ref_times = [time_step(REFERENCE_CFG, args.repeats)["ms"] for _ in range(3)]
        ref_machine = window.summary()
        ref_ms = statistics.median(ref_times)
        print(f"reference step (MLP 64-32-10 on 8x8 digits, batch 32): {ref_ms:.3f} ms")
        rows, records = time_families(fams, args, ref_ms, idle_load)
    machine = whole.summary()
    quiet = bool(ref_machine["quiet"] and machine["quiet"] and all(r["machine"]["quiet"] for r in rows))

    header = (f"| family | tasks | median ms | p90 ms | max ms | <= {args.cap_ms:g} ms | "
              "x reference | compile s | max params |")
    print()
    print(header)
    print("|" + "---|" * 9)
    for r in rows:
        mark = "" if r["machine"]["quiet"] else "*"
        print(f"| {r['family']}{mark} | {r['tasks']} | {r['median_ms']:.3f} | {r['p90_ms']:.3f} | "
              f"{r['max_ms']:.3f} | {r['under_cap']}/{r['tasks'] - r['errors']} | "
              f"{r['median_ratio_to_reference']:.2f} | {r['median_compile_s']:.2f} | "
              f"{r['max_params']} |")
    print("\n" + describe({**machine, "quiet": quiet}, idle_load, span="timed run"))
    busy = [r["family"] for r in rows if not r["machine"]["quiet"]] + ([] if ref_machine["quiet"] else ["reference"])
    if busy:
        print(f"* timed on a busy machine: {', '.join(busy)} (times are upper bounds; "
              "the ratios to the reference are less affected)")
    out = {
        "benchmark": "bench_tasksets", "cap_ms": args.cap_ms, "repeats": args.repeats,
        "num_tasks": args.num_tasks, "reference_ms": ref_ms, "reference_cfg": REFERENCE_CFG,
        "reference_machine": ref_machine, "rows": rows, "tasks": records,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "jax": jax.__version__, "devices": [str(d) for d in jax.devices()], **machine},
        "quiet": quiet,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
