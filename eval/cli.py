"""``learned-opt eval``: evaluate an optimizer on a suite; writes report.md, results.json, PNGs.

    learned-opt eval --checkpoint PATH --suite indist --out DIR
    learned-opt eval --pretrained mlp --suite ood --out DIR
    learned-opt eval --untrained mlp --suite smoke --out DIR --seeds 2 --num-steps 50
    learned-opt eval --method adam --method L-BFGS-B --suite functions2d --out DIR
    learned-opt eval --list-suites
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="learned-opt eval", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    src = p.add_argument_group("what to evaluate (at least one)")
    src.add_argument("--checkpoint", action="append", default=[], metavar="PATH",
                     help="a learned-optimizer checkpoint file or run directory (repeatable)")
    src.add_argument("--pretrained", action="append", default=[], metavar="NAME",
                     help="a pretrained optimizer shipped with the package (learned_opt.load_pretrained)")
    src.add_argument("--untrained", action="append", default=[], metavar="ARCH",
                     help="a learned optimizer at its initial θ: mlp, factored, hierarchical, ...")
    src.add_argument("--method", action="append", default=[], metavar="NAME",
                     help="an extra method: adam, sgdm, or a scipy gradient method (L-BFGS-B, CG, ...)")
    p.add_argument("--suite", default="indist", help="suite name (see --list-suites); default indist")
    p.add_argument("--out", metavar="DIR", help="output directory for report.md, results.json, PNGs")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the suite's)")
    p.add_argument("--num-steps", type=int, default=None, help="override every task's horizon")
    p.add_argument("--baselines", default=None,
                   help="comma-separated baselines instead of the suite's (e.g. adam,L-BFGS-B)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    p.add_argument("--list-suites", action="store_true", help="list the suites and exit")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    from eval import suites

    if args.list_suites:
        print(suites.describe_suites())
        return 0
    if args.out is None:
        print("learned-opt eval: --out DIR is required (or --list-suites)", file=sys.stderr)
        return 2
    if args.suite not in suites.suite_names():
        print(f"learned-opt eval: unknown suite {args.suite!r}; available: {suites.suite_names()}",
              file=sys.stderr)
        return 2
    if args.seeds is not None and args.seeds < 1:
        print("learned-opt eval: --seeds must be >= 1", file=sys.stderr)
        return 2
    if args.num_steps is not None and args.num_steps < 1:
        print("learned-opt eval: --num-steps must be >= 1", file=sys.stderr)
        return 2

    from eval import methods as M
    from eval.pipeline import run_suite
    from eval.report import summary_table, write_report

    try:
        chosen = [M.from_checkpoint(p) for p in args.checkpoint]
        chosen += [M.from_pretrained(n) for n in args.pretrained]
        chosen += [M.untrained_learned(a) for a in args.untrained]
        chosen += [M.as_method(m) for m in args.method]
    except (ValueError, TypeError, OSError) as e:
        print(f"learned-opt eval: {e}", file=sys.stderr)
        return 2
    if not chosen:
        print("learned-opt eval: nothing to evaluate: give --checkpoint, --pretrained, --untrained "
              "or --method", file=sys.stderr)
        return 2
    baselines = None if args.baselines is None else [b.strip() for b in args.baselines.split(",") if b.strip()]
    results = run_suite(chosen, args.suite, seeds=args.seeds, num_steps=args.num_steps,
                        baselines=baselines, verbose=not args.quiet)
    out = write_report(results, args.out, figures=not args.no_plots)
    print(summary_table(results))
    print(f"\nwrote {out['report']}, {out['results']}, {out['timing']}"
          + "".join(f", {p}" for p in out["figures"].values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
