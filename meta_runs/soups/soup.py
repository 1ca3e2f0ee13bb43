"""Interpolate two meta-trained θ of the same learned optimizer: θ = (1 − α)·θ_a + α·θ_b.

A "weight soup" (Wortsman et al. 2022) or, when ``b`` was fine-tuned from ``a``, a WiSE-FT style
interpolation. Both checkpoints must hold the same optimizer (same class and constructor
arguments) and θ of the same structure and shapes.

    python meta_runs/soups/soup.py --a A.lopt --b B.lopt --alpha 0.5 --out soup.lopt
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
    p.add_argument("--a", required=True)
    p.add_argument("--b", required=True)
    p.add_argument("--alpha", type=float, required=True, help="weight of --b (0 gives --a)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    lopt_a, theta_a, _ = checkpoint.load_record(args.a)
    lopt_b, theta_b, _ = checkpoint.load_record(args.b)
    if lopt_a != lopt_b:
        raise SystemExit(f"the two checkpoints hold different optimizers:\n{lopt_a!r}\n{lopt_b!r}")
    theta = interpolate(theta_a, theta_b, args.alpha)
    meta = {"soup": {"a": args.a, "b": args.b, "alpha": args.alpha}}
    checkpoint.save(args.out, lopt_a, theta, metadata=meta)
    print(f"wrote {args.out}: (1 - {args.alpha})·{args.a} + {args.alpha}·{args.b}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
