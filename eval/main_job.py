"""``learned-opt run``: the main job — meta-train, evaluate and report on the embedded default.

    learned-opt run                       # ~30 minutes on 2 CPU cores
    learned-opt run --quick               # ~3-minute smoke version
    learned-opt run --budget 60 --out runs/long

Steps (all offline; the default distribution uses only data shipped inside the package):

1. **Meta-train** a per-parameter MLP optimizer (:class:`learned_opt.MLPLOpt`) with PES on the
   default task distribution (:data:`DEFAULT_TRAIN`) for the training share of the budget,
   checkpointing into ``OUT/train/`` (``learned-opt train --resume --out OUT/train`` continues it).
2. **Evaluate** the newest θ against learning-rate-tuned Adam and L-BFGS-B on the in-distribution
   (``indist``) and out-of-distribution (``ood``) suites, through :func:`eval.evaluate_suites`.
3. **Report**: ``OUT/report.md`` (training summary, the quality check of the issue — beats tuned
   Adam on held-out / OOD tasks, divergence at 5× the horizon — and each suite's table),
   ``OUT/results.json`` (training metrics + every suite's results), the PNG plots of each suite
   under ``OUT/<suite>/`` and the checkpoint ``OUT/checkpoint.lopt``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from typing import Any, Sequence

# The embedded default: PES on a mixture of TaskSet-style tasks from the frozen `train` taskset
# (MLP classifiers on 8x8 digits, quadratics, synthetic problems, MLP autoencoders).
DEFAULT_TRAIN: dict[str, Any] = {
    "preset": "taskset_mixture",
    "overrides": {"mixture_size": 8, "num_tasks": 4, "outer_lr": 3e-3, "checkpoint_every": 25},
}
# --quick: one family, few tasks, short unrolls (a smoke test of every stage).
QUICK_TRAIN: dict[str, Any] = {
    "preset": "taskset_mixture",
    "overrides": {"mixture_size": 2, "num_tasks": 2, "unroll_length": 10, "checkpoint_every": 5},
}
SUITES = ("indist", "ood")
BASELINES = ("adam", "L-BFGS-B")


def eval_suites(quick: bool) -> dict:
    """The evaluation suites of the run: ``indist`` and ``ood`` (with --quick, 2 tasks of each at
    a quarter of the horizon — a smoke test, not a measurement)."""
    import dataclasses

    from eval.suites import FromTaskset, get_suite

    suites = {name: get_suite(name) for name in SUITES}
    if quick:
        suites = {
            "indist": dataclasses.replace(suites["indist"], name="indist-quick",
                                          entries=(FromTaskset("heldout", per_family=1, limit=2, num_steps=50),)),
            "ood": dataclasses.replace(suites["ood"], name="ood-quick",
                                       entries=(FromTaskset("ood_dataset", per_family=1, limit=1, num_steps=50),
                                                FromTaskset("ood_horizon", per_family=1, limit=1, num_steps=250))),
        }
    return suites


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="learned-opt run", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--quick", action="store_true", help="~3-minute smoke version of the whole job")
    p.add_argument("--budget", type=float, default=None, metavar="MINUTES",
                   help="total wall-clock budget (default 30, or 3 with --quick)")
    p.add_argument("--out", default=None, metavar="DIR", help="output directory (default runs/default)")
    p.add_argument("--seed", type=int, default=0, help="meta-training seed")
    p.add_argument("--seeds", type=int, default=None,
                   help="evaluation seeds per task (default 3, or 1 with --quick)")
    p.add_argument("--optimizer", default="mlp", help="learned optimizer architecture (default mlp)")
    p.add_argument("--estimator", default="pes", help="gradient estimator (default pes)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a meta-training config key (see `learned-opt train --help`)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar during meta-training")
    return p


def _eval_minutes(budget: float, quick: bool) -> float:
    """Share of the budget kept for evaluation."""
    return 0.45 * budget if quick else min(14.0, 0.45 * budget)


def train_config(args: argparse.Namespace, train_minutes: float, out_dir: str):
    """The meta-training config of this run."""
    from outer_train import apply_overrides, preset

    base = QUICK_TRAIN if args.quick else DEFAULT_TRAIN
    cfg = preset(base["preset"], **base["overrides"])
    cfg = cfg.replace(optimizer=args.optimizer, estimator=args.estimator, seed=args.seed,
                      outer_steps=1_000_000, time_budget=train_minutes, out=out_dir,
                      progress=not args.no_progress)
    if args.set:
        cfg = apply_overrides(cfg, args.set)
    return cfg


def quality(results: dict[str, dict], method: str) -> dict:
    """The issue's quality check from the suites' summaries."""
    q: dict[str, Any] = {}
    for suite, res in results.items():
        s = res["summary"].get(method, {})
        q[suite] = {"beats_adam": s.get("beats_adam"), "beats_lbfgs": s.get("beats_lbfgs"),
                    "norm_final": (s.get("norm_final") or {}).get("mean"),
                    "divergences": s.get("divergences"), "runs": s.get("runs")}
        for group, gs in (s.get("by_group") or {}).items():
            q[suite].setdefault("by_group", {})[group] = {
                "beats_adam": gs.get("beats_adam"), "divergences": gs.get("divergences"),
                "runs": gs.get("runs"), "norm_final": (gs.get("norm_final") or {}).get("mean")}
    ind = q.get("indist", {}).get("beats_adam")
    ood = q.get("ood", {}).get("beats_adam")
    horizon = (q.get("ood", {}).get("by_group") or {}).get("ood_horizon", {})
    q["targets"] = {
        "indist_beats_adam>=0.8": None if ind is None else bool(ind >= 0.8),
        "ood_beats_adam>=0.5": None if ood is None else bool(ood >= 0.5),
        "no_divergence_at_5x_horizon": None if not horizon else horizon.get("divergences") == 0,
    }
    return q


def _pct(v: Any) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.0f}%"


def _training_summary(train_dir: str, result: Any, seconds: float) -> dict:
    rows = []
    path = os.path.join(train_dir, "metrics.jsonl")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    first = [r.get("meta_loss") for r in rows[:10] if r.get("meta_loss") is not None]
    last = [r.get("meta_loss") for r in rows[-10:] if r.get("meta_loss") is not None]
    return {
        "outer_steps": int(result.step), "stopped": result.stopped, "dropped": int(result.num_dropped),
        "wall_seconds": seconds, "compile_seconds": result.compile_seconds,
        "inner_steps_per_second": result.inner_steps_per_second,
        "meta_loss_first10": sum(first) / len(first) if first else None,
        "meta_loss_last10": sum(last) / len(last) if last else None,
    }


def render_report(config: dict, training: dict, q: dict, suite_reports: dict[str, str],
                  method: str) -> str:
    t = q["targets"]
    ind, ood = q.get("indist", {}), q.get("ood", {})
    hz = (ood.get("by_group") or {}).get("ood_horizon", {})
    lines = [
        "# learned-opt run", "",
        f"Per-parameter MLP learned optimizer (`{config['optimizer']}`) meta-trained with "
        f"`{config['estimator']}` on `{config['task']}` (taskset `{config['taskset']}`, "
        f"{config['mixture_size']} tasks × {config['num_tasks']} inner problems), evaluated against "
        "learning-rate-tuned Adam and L-BFGS-B.", "",
        "## Meta-training", "",
        "| outer steps | wall time | compile | inner steps/s | meta-loss (first 10 → last 10) | dropped steps |",
        "|---:|---:|---:|---:|---|---:|",
        f"| {training['outer_steps']} | {training['wall_seconds'] / 60:.1f} min | "
        f"{training['compile_seconds']:.0f} s | {training['inner_steps_per_second']:.0f} | "
        f"{training['meta_loss_first10']:.3f} → {training['meta_loss_last10']:.3f} | {training['dropped']} |"
        if training["meta_loss_first10"] is not None else
        f"| {training['outer_steps']} | {training['wall_seconds'] / 60:.1f} min | – | – | – | {training['dropped']} |",
        "",
        "## Quality check (normalized final loss at the horizon)", "",
        "| check | measured | target | met |", "|---|---:|---:|:---:|",
        f"| beats tuned Adam, held-out in-distribution tasks | {_pct(ind.get('beats_adam'))} | ≥ 80% | "
        f"{_yes(t['indist_beats_adam>=0.8'])} |",
        f"| beats tuned Adam, OOD tasks | {_pct(ood.get('beats_adam'))} | ≥ 50% | {_yes(t['ood_beats_adam>=0.5'])} |",
        f"| diverged runs at 5× the horizon | {hz.get('divergences', '–')}/{hz.get('runs', '–')} | 0 | "
        f"{_yes(t['no_divergence_at_5x_horizon'])} |",
        f"| beats L-BFGS-B, in-distribution / OOD | {_pct(ind.get('beats_lbfgs'))} / {_pct(ood.get('beats_lbfgs'))} | – | – |",
        "",
    ]
    for suite, text in suite_reports.items():
        lines += [f"## Suite `{suite}` — [full report]({suite}/report.md)", "", text, "",
                  f"![normalized loss curves]({suite}/curves.png)", "",
                  f"![final normalized loss per task]({suite}/final.png)", ""]
    lines += ["Normalized loss: (L − L_best) / (L_init − L_best) per task, L_best the best baseline "
              "of this run, clipped to [-2, 2]; lower is better, 0 = tuned Adam's level.", ""]
    return "\n".join(lines)


def _yes(v: Any) -> str:
    return "–" if v is None else ("yes" if v else "no")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    budget = args.budget if args.budget is not None else (3.0 if args.quick else 30.0)
    if not budget > 0:
        print("learned-opt run: --budget must be > 0 minutes", file=sys.stderr)
        return 2
    seeds = args.seeds if args.seeds is not None else (1 if args.quick else 3)
    if seeds < 1:
        print("learned-opt run: --seeds must be >= 1", file=sys.stderr)
        return 2
    out = args.out or os.path.join("runs", "quick" if args.quick else "default")
    os.makedirs(out, exist_ok=True)
    train_dir = os.path.join(out, "train")
    t0 = time.perf_counter()
    eval_minutes = _eval_minutes(budget, args.quick)
    train_minutes = max(budget - eval_minutes, 0.25)

    from outer_train import train

    try:
        cfg = train_config(args, train_minutes, train_dir)
    except (ValueError, TypeError) as e:
        print(f"learned-opt run: {e}", file=sys.stderr)
        return 2
    print(f"[run] meta-training {cfg.optimizer} with {cfg.estimator} for up to {train_minutes:.1f} min "
          f"-> {train_dir}", file=sys.stderr, flush=True)
    resume = os.path.exists(os.path.join(train_dir, "resume.npz"))
    result = train(cfg, resume=resume)
    train_seconds = time.perf_counter() - t0
    training = _training_summary(train_dir, result, train_seconds)

    import learned_opt
    from eval.methods import learned_method
    from eval.pipeline import run_suite
    from eval.report import summary_table, write_report

    lopt, theta = learned_opt.load(train_dir)
    ckpt = os.path.join(out, "checkpoint.lopt")
    shutil.copyfile(learned_opt.checkpoint.latest_checkpoint(train_dir), ckpt)
    method = f"learned-{cfg.optimizer}"
    print(f"[run] evaluating {method} on {', '.join(SUITES)} ({seeds} seed(s))", file=sys.stderr, flush=True)
    results = {}
    for name, suite in eval_suites(args.quick).items():
        res = run_suite([learned_method(lopt, theta, name=method)], suite, seeds=seeds,
                        baselines=list(BASELINES), verbose=True)
        res["outputs"] = write_report(res, os.path.join(out, name))
        results[name] = res
    q = quality(results, method)
    config = cfg.to_dict()
    report = render_report(config, training, q, {s: summary_table(r) for s, r in results.items()}, method)
    with open(os.path.join(out, "report.md"), "w", encoding="utf-8") as f:
        f.write(report)
    combined = {"config": config, "training": training, "quality": q,
                "suites": {s: {k: v for k, v in r.items() if k not in ("timing", "outputs")}
                           for s, r in results.items()},
                "wall_seconds": time.perf_counter() - t0}
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(combined, f, indent=1, sort_keys=True, default=_json_default)
    print(report)
    print(f"[run] wrote {out}/report.md, {out}/results.json, plots under {out}/<suite>/, {ckpt} "
          f"({(time.perf_counter() - t0) / 60:.1f} min)", file=sys.stderr)
    return 0


def _json_default(o: Any) -> Any:
    try:
        import numpy as np
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"not JSON-serializable: {type(o).__name__}")
