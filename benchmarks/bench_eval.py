"""The cost of a full protocol evaluation: ``indist`` + ``ood`` of one learned optimizer, 3 seeds.

Runs ``eval.evaluate`` on a pretrained optimizer (default ``mlp``) exactly as ``learned-opt eval
--pretrained NAME`` does: every task of both suites with the protocol's baselines (tuned Adam,
tuned Adam + cosine, tuned SGD + momentum over the 10-rate grid: one compiled family per task;
L-BFGS-B on exact tasks). Reports wall-clock and CPU time per suite, the share spent compiling, the
slowest tasks, and -- as the same-run baseline -- what one task's baseline sweep would cost as 30
separately compiled single-setting programs instead of one family (``--sweep-ratio``).

The machine state during each timed window (load average, CPU steal) is recorded
(:mod:`benchmarks.machine`); results taken on a busy machine are marked ``"quiet": false`` (in
each window's ``"machine"`` and, for the whole file, at the top level). The load that decides is
the one before the benchmark started (its own compilation raises the 1-minute average, and the
``--sweep-ratio`` window follows the full evaluation). Prints a table, writes
``benchmarks/results/bench_eval.json``.

    python benchmarks/bench_eval.py                       # the full measurement (target: <= 8 min)
    python benchmarks/bench_eval.py --no-cache            # baselines recomputed too (cold)
    python benchmarks/bench_eval.py --suite-size 4        # a quick look
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import Window, load_now  # noqa: E402


def full_evaluation(pretrained: str, seeds: int, suite_size: int | None, cache: bool,
                    out_dir: str | None = None, suites: tuple = ("indist", "ood"),
                    idle_load: float | None = None) -> dict:
    from eval.compare import evaluate
    from eval.methods import from_pretrained
    from eval.protocol import Protocol

    baselines = set(Protocol().baselines)
    t0, c0 = time.perf_counter(), time.process_time()
    with Window(idle_load=idle_load) as w:
        res = evaluate([from_pretrained(pretrained)], None, suites, out_dir, seeds=seeds,
                       suite_size=suite_size, verbose=True, cache=cache)
    res.pop("outputs", None)
    out = {"wall_seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
           "machine": w.summary(), "suites": {}}
    computed = 0  # tasks whose baselines ran in this process (not read from the cache)
    for name, r in res.items():
        tasks = r["timing"]["tasks"]
        compile_s = sum(m["compile"] for t in tasks.values() for k, m in t.items() if k != "total")
        slow = sorted(((t["total"], n) for n, t in tasks.items()), reverse=True)[:5]
        ran = sum(1 for t in tasks.values()
                  if any(k in baselines and m["compile"] + m["run"] > 0 for k, m in t.items() if k != "total"))
        computed += ran
        out["suites"][name] = {"tasks": len(tasks), "wall_seconds": r["timing"]["total_seconds"],
                               "compile_seconds": compile_s, "tasks_with_baselines_computed": ran,
                               "slowest": [{"task": n, "seconds": s} for s, n in slow]}
    # from this run's own timings, not from counting cache files (other processes write there too)
    out["cache"] = ("off" if not cache else "warm" if computed == 0
                    else f"partly cold ({computed} tasks' baselines computed)")
    return out


def sweep_ratio(repeats: int, idle_load: float | None = None) -> dict:
    """One task's 30-setting baseline sweep as one family vs 30 single-setting programs."""
    import statistics

    from eval.baselines import hand_sweep
    from eval.protocol import Protocol
    from eval.runner import prepare_task, run_first_order
    from tasks.image_mlp import ImageMLPTask

    task = ImageMLPTask(dataset="digits", hidden_sizes=(32,), batch_size=64)
    family = [hand_sweep(k) for k in ("adam", "adam_cosine", "sgdm")]
    singles = [hand_sweep(m.name, [g["learning_rate"]], name=f"{m.name}{i}")
               for m in family for i, g in enumerate(m.grid)]
    fam_t, one_t = [], []
    with Window(idle_load=idle_load) as w:
        for _ in range(repeats):
            setup = prepare_task(task, 200, protocol=Protocol())
            t = time.perf_counter()
            run_first_order(setup, family, [0, 1, 2])
            fam_t.append(time.perf_counter() - t)
            setup = prepare_task(task, 200, protocol=Protocol())
            t = time.perf_counter()
            for m in singles:
                run_first_order(setup, [m], [0, 1, 2])
            one_t.append(time.perf_counter() - t)
    f, o = statistics.median(fam_t), statistics.median(one_t)
    return {"family_seconds": f, "separate_seconds": o, "speedup": o / f, "repeats": repeats,
            "machine": w.summary()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pretrained", default="mlp")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--suite-size", type=int, default=None)
    p.add_argument("--sweep-ratio", action="store_true", help="also time one family vs 30 programs")
    p.add_argument("--no-cache", action="store_true", help="recompute the baselines (cold measurement)")
    p.add_argument("--eval-out", default=None, help="also write the evaluation report/results here")
    p.add_argument("--suites", default="indist,ood", help="comma-separated suites (default indist,ood)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "bench_eval.json"))
    args = p.parse_args(argv)
    idle_load = load_now()  # before any of the benchmark's own work
    result = {"benchmark": "bench_eval", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "platform": platform.platform(), "pretrained": args.pretrained, "seeds": args.seeds,
              "suite_size": args.suite_size,
              "full": full_evaluation(args.pretrained, args.seeds, args.suite_size, not args.no_cache,
                                      args.eval_out, tuple(s for s in args.suites.split(",") if s),
                                      idle_load=idle_load)}
    if args.sweep_ratio:
        result["sweep_ratio"] = sweep_ratio(args.repeats, idle_load=idle_load)
    result["quiet"] = all(result[k]["machine"]["quiet"] for k in ("full", "sweep_ratio") if k in result)
    full = result["full"]
    print("\n| suite | tasks | wall s | compile s |\n|---|---:|---:|---:|")
    for name, s in full["suites"].items():
        print(f"| {name} | {s['tasks']} | {s['wall_seconds']:.0f} | {s['compile_seconds']:.0f} |")
    m = full["machine"]
    print(f"\ntotal {full['wall_seconds'] / 60:.1f} min wall, {full['cpu_seconds'] / 60:.1f} min CPU, "
          f"baseline cache {full['cache']}; "
          f"load {idle_load:.2f} before the benchmark, {m['load_1min_start']:.2f} -> {m['load_1min_end']:.2f}, "
          f"steal {100 * (m['cpu_steal'] or 0):.1f}%, "
          f"{'quiet' if m['quiet'] else 'BUSY machine: not a speed figure'}")
    if "sweep_ratio" in result:
        r = result["sweep_ratio"]
        print(f"one family {r['family_seconds']:.1f} s vs 30 programs {r['separate_seconds']:.1f} s: "
              f"{r['speedup']:.1f}x"
              f"{'' if r['machine']['quiet'] else ' (BUSY machine: the times are not speed figures)'}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
