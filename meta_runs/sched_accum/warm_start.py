"""Meta-train ScheduledAdamLOpt(step_controller=True) warm-started from the sched_trust θ.

The step controller adds a per-tensor log-step accumulator (an extra output of the per-tensor
network that is integrated over the run, and an extra context input reading it back);
:meth:`ScheduledAdamLOpt.with_step_controller` grows the sched_trust θ with zero weights there, so
at the start the optimizer makes exactly sched_trust's updates (checked below before training)
and meta-training learns to use the accumulator. The grown θ is written to ``OUT/init.lopt`` and
the run starts from it through the config key ``init_theta``.

    python meta_runs/sched_accum/warm_start.py --out runs/sched_accum                          # fresh
    learned-opt train --config runs/sched_accum/config.json --out runs/sched_accum --resume   # continue
"""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _trust_script():
    """The sched_trust warm-start script (its warm start, check and training driver)."""
    path = HERE.parent / "sched_trust" / "warm_start.py"
    spec = importlib.util.spec_from_file_location("sched_trust_warm_start", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--from", dest="source", default=str(HERE.parent / "sched_trust" / "theta_00004000.lopt"))
    p.add_argument("--config", default=str(HERE / "config.json"))
    p.add_argument("--out", default="runs/sched_accum")
    args = p.parse_args()
    # float noise from the grown matmuls' summation order is ~1e-6 on 0.01-sized steps
    _trust_script().warm_start_and_train(args.source, args.config, args.out, "with_step_controller", tolerance=1e-5)


if __name__ == "__main__":
    main()
