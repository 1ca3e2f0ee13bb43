"""Grow a trained HierarchicalLOpt(output="nominal_adam", trust_features=True) θ with the step
controller and switch its nominal increment on.

``with_step_controller`` adds zero weights (the increment readout and the accumulator's GRU
input), so with κ = 0 the grown optimizer makes exactly the source's updates (tested in
``tests/test_lopt_hierarchical_nominal.py``); ``--kappa`` then sets the hand-designed increment
``κ cos(g, m_prev)``, which does change them — the flat optimizer's H0 → H step, for the
hierarchical one.

    python meta_runs/hier_ctrl/grow.py --from meta_runs/hier_trust/theta_00001591.lopt --kappa 0.1 \\
        --out meta_runs/hier_ctrl/init_theta.lopt
"""
from __future__ import annotations

import argparse
import dataclasses

from learned_opt.checkpoint import load, save


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="source", required=True, help="a HierarchicalLOpt checkpoint")
    ap.add_argument("--kappa", type=float, default=0.1, help="hypergradient_gain of the grown optimizer")
    ap.add_argument("--out", required=True, help="where to write the grown checkpoint")
    args = ap.parse_args()
    lopt, theta = load(args.source)
    grown_lopt, grown = lopt.with_step_controller(theta)
    grown_lopt = dataclasses.replace(grown_lopt, hypergradient_gain=args.kappa)
    save(args.out, grown_lopt, grown, {"grown_from": args.source, "hypergradient_gain": args.kappa})
    print(f"wrote {args.out}: {type(grown_lopt).__name__} {grown_lopt.config()}")


if __name__ == "__main__":
    main()
