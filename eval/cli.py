"""``learned-opt eval``: evaluate optimizers on suites under the protocol; writes report.md, results.json, PNGs.

    learned-opt eval --pretrained default --out DIR                 # indist + ood, 3 seeds
    learned-opt eval --checkpoint PATH --suite indist --out DIR
    learned-opt eval --untrained mlp --suite smoke --out DIR --seeds 2 --num-steps 50
    learned-opt eval --method adam@0.01 --suite indist --suite-size 4 --out DIR
    learned-opt eval --list-suites

``DIR/results.json`` holds ``summary[suite][method]`` (wins, ties, losses, saturated, win_rate,
win_rate_ci95, median_speedup, mean_norm_final_test, mean_norm_final_train, mean_norm_area,
diverged -- against the baseline named by ``--vs``) and every task's runs with the selected
hyperparameters of each baseline and the split each number came from.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="learned-opt eval", description=(__doc__ or "").split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    src = p.add_argument_group("what to evaluate (at least one)")
    src.add_argument("--checkpoint", action="append", default=[], metavar="PATH",
                     help="a learned-optimizer checkpoint file or run directory (repeatable)")
    src.add_argument("--pretrained", action="append", default=[], metavar="NAME",
                     help="a pretrained optimizer shipped with the package (learned_opt.load_pretrained)")
    src.add_argument("--untrained", action="append", default=[], metavar="ARCH",
                     help="a learned optimizer at its initial θ: mlp, factored, hierarchical, ...")
    src.add_argument("--method", action="append", default=[], metavar="NAME",
                     help="an extra method: adam, adam_cosine, sgdm, adam@<lr>, or a scipy gradient method")
    p.add_argument("--suite", action="append", default=[], metavar="NAME",
                   help="suite(s) (repeatable or comma-separated; see --list-suites); default indist,ood")
    p.add_argument("--suite-size", type=int, default=None, metavar="K",
                   help="keep K tasks per suite (balanced over its parts): a smoke run")
    p.add_argument("--out", metavar="DIR", help="output directory for report.md, results.json, PNGs")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the suite's, 3)")
    p.add_argument("--num-steps", type=int, default=None, help="override every task's horizon")
    p.add_argument("--vs", default="adam", help="headline baseline of the summaries (default adam)")
    p.add_argument("--baselines", default=None,
                   help="comma-separated baselines (default adam,adam_cosine,sgdm,L-BFGS-B)")
    p.add_argument("--win-speedup", type=float, default=None, help="speed-up that counts as a win (1.1)")
    p.add_argument("--tie-band", type=float, default=None,
                   help="final-loss tie band as a fraction of L_init - L_best (0.01)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    p.add_argument("--no-cache", action="store_true",
                   help="recompute the baselines instead of reusing their cached runs "
                        "($LEARNED_OPT_EVAL_CACHE or ~/.cache/learned_opt/eval_baselines)")
    p.add_argument("--list-suites", action="store_true", help="list the suites and exit")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    return p


def _fail(msg: str) -> int:
    print(f"learned-opt eval: {msg}", file=sys.stderr)
    return 2


def _protocol(args):
    from eval.protocol import Protocol

    changes = {"vs": args.vs}
    if args.baselines is not None:
        changes["baselines"] = tuple(b.strip() for b in args.baselines.split(",") if b.strip())
    if args.win_speedup is not None:
        changes["win_speedup"] = args.win_speedup
    if args.tie_band is not None:
        changes["tie_band"] = args.tie_band
    return Protocol(**changes)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    from eval import suites

    if args.list_suites:
        print(suites.describe_suites())
        return 0
    if args.out is None:
        return _fail("--out DIR is required (or --list-suites)")
    names = [s.strip() for arg in (args.suite or ["indist,ood"]) for s in arg.split(",") if s.strip()]
    for s in names:
        if s not in suites.suite_names():
            return _fail(f"unknown suite {s!r}; available: {suites.suite_names()}")
    for flag, v in (("--seeds", args.seeds), ("--num-steps", args.num_steps), ("--suite-size", args.suite_size)):
        if v is not None and v < 1:
            return _fail(f"{flag} must be >= 1, got {v}")

    from eval import methods as M
    from eval.compare import evaluate
    from eval.report import summary_table

    try:
        protocol = _protocol(args)
        chosen = [M.from_checkpoint(p) for p in args.checkpoint]
        chosen += [M.from_pretrained(n) for n in args.pretrained]
        chosen += [M.untrained_learned(a) for a in args.untrained]
        chosen += [M.as_method(m) for m in args.method]
    except (ValueError, TypeError, OSError) as e:
        return _fail(str(e))
    if not chosen:
        return _fail("nothing to evaluate: give --checkpoint, --pretrained, --untrained or --method")
    results = evaluate(chosen, None, names, args.out, seeds=args.seeds, num_steps=args.num_steps,
                       protocol=protocol, suite_size=args.suite_size, verbose=not args.quiet,
                       figures=not args.no_plots, cache=not args.no_cache)
    out = results.pop("outputs")
    for s, r in results.items():
        print(f"\n## {s}\n\n{summary_table(r)}")
    print(f"\nwrote {out['report']}, {out['results']}, {out['timing']}"
          + "".join(f", {p}" for figs in out["figures"].values() for p in figs.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
