"""Compute and store the normalization statistics of a named taskset.

    python -m tasksets.stats --taskset train            # one taskset (its frozen cfgs)
    python -m tasksets.stats --all                      # every named taskset
    python -m tasksets.stats --taskset train --fresh    # recompute entries already stored

For every cfg of the frozen taskset this runs :func:`tasksets.compute_norm_stats` over the
taskset's horizon (Adam over the learning-rate grid, L-BFGS-B on full-batch tasks) and writes
``tasksets/data/norm_stats/<taskset>.json`` after each task, so an interrupted run resumes
where it stopped (entries computed with the same settings are kept unless ``--fresh``).
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Optional, Sequence

from tasksets.baselines import DEFAULT_LEARNING_RATES, DEFAULT_SEEDS, compute_norm_stats
from tasksets.normalization import NORM_STATS_DIR, load_norm_stats, norm_stats_path, write_norm_stats
from tasksets.splits import load_taskset_doc, taskset_names


def compute_taskset_stats(name: str, *, num_steps: Optional[int] = None,
                          learning_rates: Sequence[float] = DEFAULT_LEARNING_RATES,
                          seeds: Sequence[int] = DEFAULT_SEEDS, fresh: bool = False,
                          directory=None, verbose: bool = True) -> dict:
    """Statistics of every task of the frozen taskset ``name``; writes the JSON file."""
    doc = load_taskset_doc(name)
    steps = int(doc["horizon"] if num_steps is None else num_steps)
    meta = {"num_steps": steps, "learning_rates": [float(x) for x in learning_rates],
            "seeds": [int(s) for s in seeds], "optimizer": "adam (optax), L-BFGS-B on full-batch",
            "taskset_horizon": int(doc["horizon"])}
    entries: dict = {}
    if not fresh and norm_stats_path(name, directory).exists():
        old = load_norm_stats(name, directory)
        if old.get("meta", {}).get("num_steps") == steps and \
                old["meta"].get("learning_rates") == meta["learning_rates"] and \
                old["meta"].get("seeds") == meta["seeds"]:
            wanted = {t["task_id"] for t in doc["tasks"]}
            entries = {k: v for k, v in old["tasks"].items() if k in wanted}
    t_start = time.perf_counter()
    for i, entry in enumerate(doc["tasks"]):
        tid = entry["task_id"]
        if tid in entries:
            continue
        stats = compute_norm_stats(entry["cfg"], num_steps=steps, learning_rates=learning_rates,
                                   seeds=seeds)
        if stats["task_id"] != tid:
            raise RuntimeError(f"task id mismatch for {name}[{i}]: frozen {tid}, cfg gives "
                               f"{stats['task_id']} (the frozen file was edited by hand?)")
        entries[tid] = stats
        write_norm_stats(name, entries, meta, directory)
        if verbose:
            print(f"[{name} {i + 1}/{len(doc['tasks'])}] {tid}: init {stats['loss_init']:.4g} "
                  f"best {stats['loss_best']:.4g} ({stats['best_method']}) "
                  f"{stats['seconds']:.1f}s", flush=True)
    path = write_norm_stats(name, entries, meta, directory)
    if verbose:
        print(f"wrote {path} ({len(entries)} tasks, {time.perf_counter() - t_start:.0f}s)")
    return {"path": str(path), "tasks": entries, "meta": meta}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasksets.stats", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--taskset", action="append", help="named taskset (repeatable)")
    which.add_argument("--all", action="store_true", help="every named taskset")
    parser.add_argument("--num-steps", type=int, default=None,
                        help="inner steps of the sweep (default: the taskset's horizon)")
    parser.add_argument("--learning-rates", type=float, nargs="+", default=list(DEFAULT_LEARNING_RATES))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    parser.add_argument("--fresh", action="store_true", help="recompute stored entries")
    parser.add_argument("--out-dir", default=None, help=f"default: {NORM_STATS_DIR}")
    args = parser.parse_args(argv)
    if len(args.learning_rates) < 7:
        parser.error("the baseline sweep needs at least 7 learning rates")
    names = taskset_names() if args.all else args.taskset
    unknown = [n for n in names if n not in taskset_names()]
    if unknown:
        parser.error(f"unknown taskset(s) {unknown}; named tasksets: {taskset_names()}")
    for name in names:
        compute_taskset_stats(name, num_steps=args.num_steps, learning_rates=args.learning_rates,
                              seeds=args.seeds, fresh=args.fresh, directory=args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
