"""``learned-opt train``: meta-train a learned optimizer from a preset or a config file.

Examples::

    learned-opt train --list-presets
    learned-opt train --preset quadratic --estimator pes --outer-steps 20 --out runs/q
    learned-opt train --config runs/q/config.json --resume          # continue where it stopped
    learned-opt train --preset image_mlp --set task_kwargs.hidden_sizes=[64] --set sigma=0.003

Precedence: preset/config file < dedicated options (--estimator, --outer-steps, ...) < --set.
With ``--resume`` and no ``--config``/``--preset``, the run directory's ``config.json`` is used.

Scale-out (:mod:`outer_train.distributed`): with more than one device the task batch is sharded
over all of them (``--devices auto``, the default; ``--devices 1`` disables). ``--host-devices N``
splits a CPU into N XLA devices. Multi-host: start one process per host with
``--coordinator HOST:PORT --num-processes N --process-id I`` (or the environment variables
``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``; or ``--distributed`` to
let JAX detect SLURM / Open MPI / TPU-pod settings); the run directory must be shared.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

from learned_opt.errors import UserError
from outer_train.config import TrainConfig, apply_overrides, load_config, preset, presets
from outer_train.estimators import ESTIMATORS


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="learned-opt train", description="Meta-train a learned optimizer.")
    p.add_argument("--preset", help="named preset (see --list-presets)")
    p.add_argument("--config", help="JSON/YAML config file, or a preset name")
    p.add_argument("--list-presets", action="store_true", help="list the presets and exit")
    p.add_argument("--estimator", choices=ESTIMATORS)
    p.add_argument("--optimizer", help="learned optimizer name (mlp, hierarchical, factored_mlp, sgd, "
                                       "momentum, adam)")
    p.add_argument("--outer-steps", type=int)
    p.add_argument("--out", help="run directory (checkpoints, metrics.jsonl, θ files)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's checkpoint")
    p.add_argument("--seed", type=int)
    p.add_argument("--num-tasks", type=int)
    p.add_argument("--unroll-length", type=int, help="inner steps per outer step (truncation window)")
    p.add_argument("--trunc-length", type=int, help="inner steps per trajectory before a reset")
    p.add_argument("--outer-lr", type=float)
    p.add_argument("--sigma", type=float, help="ES perturbation / smoothing scale")
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--time-budget", type=float, help="minutes; stop (after a checkpoint) when exceeded")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key (dotted keys reach into task_kwargs / optimizer_kwargs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--compile-cache", metavar="DIR",
                   help="enable JAX's persistent compilation cache in DIR")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    g = p.add_argument_group("devices and hosts")
    g.add_argument("--devices", type=_devices_arg, metavar="auto|N",
                   help="devices to shard the task batch over (default: config 'devices', auto = all)")
    g.add_argument("--host-devices", type=_host_devices_arg, metavar="N|auto",
                   help="split the CPU into N XLA devices (auto: one per core); set before JAX starts")
    g.add_argument("--coordinator", metavar="HOST:PORT",
                   help="address of process 0's coordinator service (multi-process training)")
    g.add_argument("--num-processes", type=int, help="number of processes (multi-process training)")
    g.add_argument("--process-id", type=int, help="this process's index in [0, num-processes)")
    g.add_argument("--distributed", action="store_true",
                   help="initialize JAX's multi-process runtime, detecting missing settings from "
                        "SLURM / Open MPI / TPU pod environments")
    return p


def _devices_arg(text: str):
    if text == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be 'auto' or an int >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 'auto' or an int >= 1, got {text!r}")
    return value


def _host_devices_arg(text: str):
    return (os.cpu_count() or 1) if text == "auto" else _devices_arg(text)


def setup_runtime(args: argparse.Namespace) -> None:
    """Host device count and multi-process runtime; must precede every JAX computation."""
    from outer_train import distributed
    if args.host_devices is not None:
        distributed.set_host_devices(args.host_devices)
    distributed.initialize(args.coordinator, args.num_processes, args.process_id,
                           auto_detect=args.distributed)


def _load_config_file(path: str) -> TrainConfig:
    """:func:`load_config`, with a malformed JSON/YAML file reported as a UserError naming it."""
    try:
        return load_config(path)
    except Exception as err:
        if isinstance(err, json.JSONDecodeError) or any(c.__name__ == "YAMLError" for c in type(err).__mro__):
            detail = " ".join(str(err).split())
            raise UserError(f"cannot parse config file {path}: {detail}") from err
        raise


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """The config named by the arguments (see the module docstring for the precedence)."""
    if args.preset and args.config:
        raise ValueError("give --preset or --config, not both")
    if args.preset:
        config = preset(args.preset)
    elif args.config:
        config = _load_config_file(args.config)
    elif args.resume and args.out and os.path.exists(os.path.join(args.out, "config.json")):
        config = _load_config_file(os.path.join(args.out, "config.json"))
    else:
        raise ValueError("give --preset NAME or --config FILE (or --resume --out DIR of an existing run)")
    direct = {"estimator": args.estimator, "optimizer": args.optimizer, "outer_steps": args.outer_steps,
              "out": args.out, "seed": args.seed, "num_tasks": args.num_tasks,
              "unroll_length": args.unroll_length, "trunc_length": args.trunc_length,
              "outer_lr": args.outer_lr, "sigma": args.sigma, "checkpoint_every": args.checkpoint_every,
              "time_budget": args.time_budget, "devices": getattr(args, "devices", None)}
    direct = {k: v for k, v in direct.items() if v is not None}
    if args.optimizer is not None and args.optimizer != config.optimizer:
        direct["optimizer_kwargs"] = {}  # the preset's kwargs belong to its optimizer
    if args.no_progress:
        direct["progress"] = False
    config = apply_overrides(config, direct)
    return apply_overrides(config, args.set)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.list_presets:
        for name, desc in presets().items():
            print(f"{name:<18} {desc}")
        return 0
    try:
        config = resolve_config(args)
    except (ValueError, TypeError) as err:
        print(f"learned-opt train: error: {err}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(config.to_dict(), indent=1))
        return 0
    try:
        setup_runtime(args)
        import warnings

        from outer_train.distributed import resolve_device_count
        with warnings.catch_warnings():  # fail early on a bad device count; train() warns itself
            warnings.simplefilter("ignore")
            resolve_device_count(config.devices, config.num_tasks)
    except (ValueError, RuntimeError) as err:
        print(f"learned-opt train: error: {err}", file=sys.stderr)
        return 2
    if args.compile_cache:
        import jax
        jax.config.update("jax_compilation_cache_dir", args.compile_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    from outer_train.trainer import train
    result = train(config, resume=args.resume)
    last = result.history[-1] if result.history else {}
    print(json.dumps({"step": result.step, "stopped": result.stopped, "num_dropped": result.num_dropped,
                      "meta_loss": last.get("meta_loss"), "out": result.out,
                      "compile_seconds": result.compile_seconds,
                      "inner_steps_per_second": result.inner_steps_per_second,
                      "devices": result.num_devices}))
    return 0
