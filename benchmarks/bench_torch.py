"""Per-step cost of the learned-optimizer torch wrapper vs torch.optim.Adam on the same model.

One training step = ``zero_grad`` + forward + backward of a PyTorch MLP (default 784-1024-256-10,
~1.07M parameters, batch 128, softmax cross-entropy, synthetic seeded data) + ``optimizer.step``.
Compared: ``torch.optim.Adam`` and ``learned_opt.torch.LearnedOpt`` with each shipped pretrained
learned optimizer (its update runs jitted in JAX on the host copies of the parameters and
gradients; the new values come back through DLPack). Every optimizer has its own copy of the
model and all are timed in one process, interleaved round-robin over repetitions (load drift
hits all alike); the figure is the median over repetitions of the mean time of a block of steps,
for the whole step and for ``optimizer.step`` alone. Ratios are against Adam in the same run.
torch runs with one intra-op thread by default (``--torch-threads``), see below.

The machine is shared: the load average (``uptime``) before and after is recorded with the
figures, and they should be read as what they are, measurements under that load.

A third column times the same learned optimizer's jitted JAX update alone (on JAX arrays, no
torch), so the wrapper's own overhead (host copies, DLPack, Python) is the difference.

Two models by default: the 1.07M-parameter MLP of bench_lopt.py and a small 64-128-10 one
(~9.6k parameters), where fixed per-call costs dominate.

Usage: python benchmarks/bench_torch.py [--reps 7] [--steps 5] [--models 784,1024,256,10 64,128,10] [--batch 128]
Writes benchmarks/results/bench_torch.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import learned_opt  # noqa: E402
from learned_opt.torch import LearnedOpt  # noqa: E402


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def make_model(sizes: list[int], seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def bench_model(sizes: list[int], args) -> dict:
    import jax
    import jax.numpy as jnp

    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, sizes[0], generator=g)
    y = torch.randint(0, sizes[-1], (args.batch,), generator=g)
    names = ["torch.optim.Adam"] + [f"LearnedOpt({n!r})" for n in learned_opt.pretrained_names()]
    entries = []
    for name in names:
        model = make_model(sizes, seed=1)
        if name == "torch.optim.Adam":
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        else:
            opt = LearnedOpt(model.parameters(), name.split("'")[1], num_steps=1000)
        entries.append({"name": name, "model": model, "opt": opt, "step": [], "update": [], "jax": []})
    num_params = sum(p.numel() for p in entries[0]["model"].parameters())

    def one_step(e) -> float:
        e["opt"].zero_grad()
        loss = torch.nn.functional.cross_entropy(e["model"](x), y)
        loss.backward()
        t = time.perf_counter()
        e["opt"].step() if e["name"] == "torch.optim.Adam" else e["opt"].step(loss=loss)
        return time.perf_counter() - t

    # the same learned optimizers' JAX update alone, on the same shapes
    jax_only = {}
    for e in entries[1:]:
        tx = e["opt"].tx
        params = {str(i): jnp.asarray(p.detach().numpy()) for i, p in enumerate(e["model"].parameters())}
        grads = jax.tree_util.tree_map(lambda a: 1e-3 * jnp.ones_like(a), params)
        fn = jax.jit(lambda gr, st, pa, lo, tx=tx: tx.update(gr, st, pa, loss=lo))
        jax_only[e["name"]] = {"fn": fn, "params": params, "grads": grads, "state": tx.init(params)}

    def one_jax(name: str) -> float:
        j = jax_only[name]
        t = time.perf_counter()
        upd, j["state"] = j["fn"](j["grads"], j["state"], j["params"], jnp.float32(1.0))
        jax.block_until_ready(upd)
        return time.perf_counter() - t

    for e in entries:  # compile / warm caches
        for _ in range(args.warmup):
            one_step(e)
            if e["name"] in jax_only:
                one_jax(e["name"])
    for _ in range(args.reps):
        for e in entries:
            t0 = time.perf_counter()
            upd = sum(one_step(e) for _ in range(args.steps))
            e["step"].append((time.perf_counter() - t0) / args.steps)
            e["update"].append(upd / args.steps)
            if e["name"] in jax_only:
                e["jax"].append(sum(one_jax(e["name"]) for _ in range(args.steps)) / args.steps)

    b_step, b_upd = float(np.median(entries[0]["step"])), float(np.median(entries[0]["update"]))
    results = []
    for e in entries:
        step, upd = float(np.median(e["step"])), float(np.median(e["update"]))
        r = {"optimizer": e["name"], "median_step_ms": 1e3 * step, "median_optimizer_step_ms": 1e3 * upd,
             "step_ratio_vs_adam": step / b_step, "optimizer_step_ratio_vs_adam": upd / b_upd,
             "step_ms_all_reps": [1e3 * v for v in e["step"]]}
        if e["jax"]:
            r["median_jax_update_alone_ms"] = 1e3 * float(np.median(e["jax"]))
        results.append(r)
    return {"sizes": sizes, "num_params": int(num_params), "results": results}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--steps", type=int, default=5, help="steps per timed block")
    ap.add_argument("--models", nargs="+", default=["784,1024,256,10", "64,128,10"],
                    help="MLP layer sizes, comma-separated, one model per argument")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per optimizer (JAX compilation)")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="torch intra-op threads (default 1: on a shared 2-core machine torch's spinning OpenMP "
                         "pool made a 1M-parameter MLP step ~10x slower with 2 threads than with 1)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "bench_torch.json"))
    args = ap.parse_args(argv)
    try:
        models = [[int(v) for v in m.split(",")] for m in args.models]
    except ValueError:
        ap.error("--models: each model is comma-separated integers, e.g. 784,1024,256,10")
    if args.reps < 1 or args.steps < 1 or args.batch < 1 or any(len(m) < 2 for m in models):
        ap.error("--reps, --steps and --batch must be positive and every model needs at least two sizes")

    torch.set_num_threads(args.torch_threads)
    load_before, uptime_before = os.getloadavg(), uptime()
    runs = [bench_model(m, args) for m in models]
    load_after, uptime_after = os.getloadavg(), uptime()
    report = {"benchmark": "bench_torch", "batch": args.batch, "reps": args.reps, "steps_per_rep": args.steps,
              "baseline": "torch.optim.Adam", "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
              "jax": __import__("jax").__version__, "cpu_count": os.cpu_count(),
              "load_average_before": list(load_before), "load_average_after": list(load_after),
              "uptime_before": uptime_before, "uptime_after": uptime_after,
              "platform": platform.platform(), "runs": runs}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")

    print(f"batch {args.batch}; median of {args.reps} reps x {args.steps} steps; torch threads "
          f"{torch.get_num_threads()}; load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
          f"({os.cpu_count()} cores, shared machine)")
    for run in runs:
        print(f"\nMLP {run['sizes']} ({run['num_params']:,} params)\n")
        print("| optimizer | step ms (fwd+bwd+update) | × Adam | optimizer.step ms | × Adam's step "
              "| JAX update alone ms |")
        print("|---|---:|---:|---:|---:|---:|")
        for r in run["results"]:
            jx = r.get("median_jax_update_alone_ms")
            print(f"| {r['optimizer']} | {r['median_step_ms']:.2f} | {r['step_ratio_vs_adam']:.2f} | "
                  f"{r['median_optimizer_step_ms']:.2f} | {r['optimizer_step_ratio_vs_adam']:.2f} | "
                  f"{'–' if jx is None else f'{jx:.2f}'} |")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
