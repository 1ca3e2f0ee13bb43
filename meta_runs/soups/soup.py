"""Interpolate two meta-trained θ of the same learned optimizer: θ = (1 − α)·θ_a + α·θ_b.

A "weight soup" (Wortsman et al. 2022) or, when ``b`` was fine-tuned from ``a``, a WiSE-FT style
interpolation. Both checkpoints must hold the same optimizer (same class and constructor
arguments) and θ of the same structure and shapes.

    python meta_runs/soups/soup.py --a A.lopt --b B.lopt --alpha 0.5 --out soup.lopt
    python meta_runs/soups/soup.py --mean runs/X/theta_0000{1,2}*.lopt --out tail.lopt   # uniform mean
"""
from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp

from learned_opt import checkpoint


def interpolate(theta_a, theta_b, alpha: float):
    """Leafwise ``(1 − alpha)·a + alpha·b``; raises if the two trees differ in structure or shape."""
    sa, sb = jax.tree_util.tree_structure(theta_a), jax.tree_util.tree_structure(theta_b)
    if sa != sb:
        raise ValueError(f"θ trees differ in structure:\n{sa}\n{sb}")
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(theta_a), jax.tree_util.tree_leaves(theta_b)):
        if jnp.shape(a) != jnp.shape(b):
            raise ValueError(f"θ leaf {jax.tree_util.keystr(path)}: shapes {jnp.shape(a)} vs {jnp.shape(b)}")
    return jax.tree_util.tree_map(lambda a, b: (1.0 - alpha) * a + alpha * b, theta_a, theta_b)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a")
    p.add_argument("--b")
    p.add_argument("--alpha", type=float, help="weight of --b (0 gives --a)")
    p.add_argument("--mean", nargs="+", metavar="LOPT", help="instead: the uniform mean of these θ files")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.mean:
        return _mean(args.mean, args.out)
    if args.a is None or args.b is None or args.alpha is None:
        p.error("give --a, --b and --alpha, or --mean FILES")
    lopt_a, theta_a, _ = checkpoint.load_record(args.a)
    lopt_b, theta_b, _ = checkpoint.load_record(args.b)
    if lopt_a != lopt_b:
        raise SystemExit(f"the two checkpoints hold different optimizers:\n{lopt_a!r}\n{lopt_b!r}")
    theta = interpolate(theta_a, theta_b, args.alpha)
    meta = {"soup": {"a": args.a, "b": args.b, "alpha": args.alpha}}
    checkpoint.save(args.out, lopt_a, theta, metadata=meta)
    print(f"wrote {args.out}: (1 - {args.alpha})·{args.a} + {args.alpha}·{args.b}")
    return 0


def _mean(paths: list[str], out: str) -> int:
    """θ = (1/n) Σ θ_i, as a running interpolation: θ_k = θ_{k-1} + (θ_k' − θ_{k-1}) / k."""
    lopt, theta, _ = checkpoint.load_record(paths[0])
    for k, path in enumerate(paths[1:], start=2):
        other_lopt, other, _ = checkpoint.load_record(path)
        if other_lopt != lopt:
            raise SystemExit(f"{path} holds a different optimizer than {paths[0]}")
        theta = interpolate(theta, other, 1.0 / k)
    checkpoint.save(out, lopt, theta, metadata={"soup": {"mean_of": paths}})
    print(f"wrote {out}: the mean of {len(paths)} θ files ({paths[0]} … {paths[-1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
