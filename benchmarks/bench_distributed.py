"""Outer training sharded over host devices: inner steps/s with 1 and 2 devices, projected scaling.

Configurations (a) and (c) of ``bench_outer.py`` (built by its ``build``: 8 tasks x 20 inner steps
per outer step, PES, MLP learned optimizer; (a) 10-dim quadratics, (c) an 8x8 digits MLP). Each
device count runs in its own process (the CPU is split into N XLA devices with
``outer_train.distributed.set_host_devices`` before JAX starts); N = 1 is the plain unsharded
path, N > 1 shards the task axis (``TaskLayout``) exactly as ``train`` does. Throughput is the
median over ``--rounds`` fresh processes (interleaved 1, 2, 1, 2, ... to spread the drift of a
shared machine's load) x ``--repeats`` blocks of ``--steps`` outer steps (metrics fetched every
step, as the trainer does). "cores used" is process CPU time / wall time while timing: a
2-device run that gets less than 2 cores is starved by other load and cannot show its speedup.

Communication is read from the compiled program: every all-reduce in the partitioned HLO with its
payload (ops inside the inner-step loop run ``unroll_length`` times per outer step). The payload
is dominated by the meta-gradient (= bytes of θ); the loop carries one 1-byte predicate per inner
step (the batch-level "did any task reset" test). A 2-device all-reduce of θ's size is timed too.

Projection to P devices (weak scaling: 8 tasks per device, so each device does the measured
per-device work per outer step, t_dev = 1/per-device throughput x per-device inner steps; the
per-device throughput is the 1-device run's rate per CPU core it got):

    t_step(P) = t_dev + n_loop * lat(P) + [lat(P) + 2 (P-1)/P * bytes / bw] + n_other * lat(P)
    lat(P) = 2 * ceil(log2 P) * alpha  (tree all-reduce)

with (alpha, bw) = (5 us, 10 GB/s) inside a host (8 devices) and (50 us, 1.25 GB/s = 10 GbE)
across hosts (64 devices = 8 hosts x 8). These link figures are assumptions, stated in the JSON;
only t_dev, the op counts and the byte sizes are measured.

    python benchmarks/bench_distributed.py [--configs a,c] [--devices 1,2] [--steps 10] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

LINKS = {8: {"alpha_s": 5e-6, "bandwidth_Bps": 10e9, "where": "one host, 8 devices"},
         64: {"alpha_s": 50e-6, "bandwidth_Bps": 1.25e9, "where": "8 hosts x 8 devices, 10 GbE"}}
_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4,
                "f32": 4, "s64": 8, "u64": 8, "f64": 8}


def collectives(hlo: str) -> list[dict]:
    """All-reduce ops of a compiled HLO text: payload bytes and whether they sit in a loop body."""
    ops = []
    for line in hlo.splitlines():
        m = re.match(r"\s*(?:ROOT\s+)?%\S+\s*=\s*(.+?)\s+all-reduce(?:-start)?\(", line)
        if not m:
            continue
        nbytes = 0
        for dtype, dims in re.findall(r"\b([a-z]+\d*)\[([\d,]*)\]", m.group(1)):
            size = math.prod(int(d) for d in dims.split(",") if d) if dims else 1
            nbytes += _DTYPE_BYTES.get(dtype, 4) * size
        ops.append({"bytes": nbytes, "in_loop": "/while/body/" in line, "shape": m.group(1)[:80]})
    return ops


def worker(letter: str, devices: int, steps: int, repeats: int) -> dict:
    from outer_train.distributed import allreduce_bytes, make_layout, set_host_devices
    set_host_devices(devices)
    import jax
    import jax.numpy as jnp
    import numpy as np

    from bench_outer import CONFIGS, build  # the configurations of bench_outer.py
    from outer_train.config import TrainConfig
    from outer_train.trainer import make_outer_optimizer, make_outer_step

    est, state, outer_step = build(letter)
    layout = make_layout(devices, est)
    if layout is None:
        step = jax.jit(outer_step)
    else:
        # bench_outer's outer optimizer (Adam 1e-3, clip 1.0) around the sharded estimator
        opt = make_outer_optimizer(TrainConfig(outer_lr=1e-3, grad_clip=1.0, progress=False))
        state = layout.put(state)
        step = layout.jit_step(make_outer_step(layout.shard_estimator(est), opt), state)
    jax.block_until_ready(state)
    t0 = time.perf_counter()
    compiled = step.lower(state).compile()
    compile_s = time.perf_counter() - t0
    ops = collectives(compiled.as_text()) if layout is not None else []
    state, m = compiled(state)
    jax.device_get(m)
    rates, cores_used = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(steps):
            state, m = compiled(state)
            jax.device_get(m)
        dt = time.perf_counter() - t0
        rates.append(est.inner_steps * steps / dt)
        cores_used.append((time.process_time() - c0) / dt)  # CPU seconds per second: cores we got
    theta_bytes = allreduce_bytes(state.theta)
    allreduce_s = None
    if layout is not None:  # time a θ-sized all-reduce across the devices
        d = theta_bytes // 4
        x = jax.device_put(np.ones((devices, d), np.float32), layout.task_sharding)
        f = jax.jit(lambda v: jnp.sum(v, axis=0), out_shardings=layout.replicated)
        f(x).block_until_ready()
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(100):  # one at a time: several in-flight collectives can starve the CPU pool
                f(x).block_until_ready()
            times.append((time.perf_counter() - t0) / 100)
        allreduce_s = statistics.median(times)
    return {"config": letter, "description": CONFIGS[letter][0], "devices": devices,
            "compile_s": compile_s, "inner_steps_per_s": statistics.median(rates), "rates": rates,
            "cores_used": statistics.median(cores_used),
            "inner_steps_per_outer_step": est.inner_steps, "unroll_length": est.unroll_length,
            "theta_bytes": theta_bytes, "allreduce_ops": ops, "allreduce_2dev_s": allreduce_s,
            "meta_loss_last": float(m["meta_loss"])}


def _lat(p: int, alpha: float) -> float:
    return 2 * math.ceil(math.log2(p)) * alpha if p > 1 else 0.0


def project(row1: dict, rowp: dict | None, p: int) -> dict:
    """Projected inner steps/s on p devices (weak scaling, see the module docstring)."""
    link = LINKS[p]
    # one device = one core: the single-device rate per core it actually got (a shared machine
    # may give a process less than the cores it asks for)
    per_device_rate = row1["inner_steps_per_s"] / min(max(row1["cores_used"], 0.25), 1.0)
    t_dev = row1["inner_steps_per_outer_step"] / per_device_rate
    ops = (rowp or {}).get("allreduce_ops") or []
    k = row1["unroll_length"]
    n_loop = sum(o["in_loop"] for o in ops)
    big = max((o["bytes"] for o in ops if not o["in_loop"]), default=row1["theta_bytes"])
    n_other = max(sum(not o["in_loop"] for o in ops) - 1, 0)
    lat = _lat(p, link["alpha_s"])
    t_comm = n_loop * k * lat + (lat + 2 * (p - 1) / p * big / link["bandwidth_Bps"]) + n_other * lat
    rate = p * row1["inner_steps_per_outer_step"] / (t_dev + t_comm)
    return {"devices": p, "where": link["where"], "per_device_rate": per_device_rate, "t_dev_s": t_dev,
            "t_comm_s": t_comm, "inner_steps_per_s": rate, "efficiency": t_dev / (t_dev + t_comm),
            "bytes_per_outer_step": big + sum(o["bytes"] * (k if o["in_loop"] else 1) for o in ops
                                              if o["bytes"] != big or o["in_loop"])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--configs", default="a,c")
    p.add_argument("--devices", default="1,2")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2,
                   help="fresh processes per (config, devices), interleaved to spread load drift")
    p.add_argument("--worker", nargs=2, metavar=("CONFIG", "DEVICES"), help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_distributed.json"))
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.steps, args.repeats)))
        return 0
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("XLA_FLAGS", None)
    rows = []
    for letter in args.configs.split(","):
        runs: dict[int, list[dict]] = {}
        for _ in range(args.rounds):
            for n in (int(x) for x in args.devices.split(",")):
                cmd = [sys.executable, __file__, "--worker", letter, str(n), "--steps", str(args.steps),
                       "--repeats", str(args.repeats)]
                res = subprocess.run(cmd, env=env, capture_output=True, text=True)
                if res.returncode != 0:
                    print(res.stderr[-3000:], file=sys.stderr)
                    return 1
                run = json.loads(res.stdout.strip().splitlines()[-1])
                runs.setdefault(n, []).append(run)
                print(f"({letter}) {n} device(s): compile {run['compile_s']:.1f} s, {run['inner_steps_per_s']:,.0f} "
                      f"inner steps/s {[f'{r:.0f}' for r in run['rates']]}, cores used {run['cores_used']:.2f}",
                      flush=True)
        for group in runs.values():
            row = dict(group[0])
            row["rates"] = [r for g in group for r in g["rates"]]
            row["inner_steps_per_s"] = statistics.median(row["rates"])
            row["compile_s"] = statistics.median(g["compile_s"] for g in group)
            row["cores_used"] = statistics.median(g["cores_used"] for g in group)
            row["allreduce_2dev_s"] = None if group[0]["allreduce_2dev_s"] is None else \
                statistics.median(g["allreduce_2dev_s"] for g in group)
            rows.append(row)
    print()
    print("| config | devices | inner steps/s | vs 1 device | cores used | compile s "
          "| θ bytes (all-reduce/outer step) | all-reduces per outer step |")
    print("|---|---|---|---|---|---|---|---|")
    projections = []
    for letter in args.configs.split(","):
        group = [r for r in rows if r["config"] == letter]
        base = next((r for r in group if r["devices"] == 1), None)
        for r in group:
            r["speedup_vs_1"] = r["inner_steps_per_s"] / base["inner_steps_per_s"] if base else None
            ops = r["allreduce_ops"]
            n_loop = sum(o["in_loop"] for o in ops)
            n_ops = str(sum(not o["in_loop"] for o in ops))
            if n_loop:
                n_ops += f" + {n_loop}x{r['unroll_length']} in loop"
            sp = f"{r['speedup_vs_1']:.2f}x" if r["speedup_vs_1"] else "-"
            print(f"| ({letter}) {r['description']} | {r['devices']} | {r['inner_steps_per_s']:,.0f} | {sp} | "
                  f"{r['cores_used']:.2f} | {r['compile_s']:.1f} | {r['theta_bytes']:,} | {n_ops} |")
        if base is not None:
            multi = max((r for r in group if r["devices"] > 1), key=lambda r: r["devices"], default=None)
            for pdev in (8, 64):
                pr = project(base, multi, pdev)
                pr["config"] = letter
                projections.append(pr)
    print()
    print("| config | projected devices | where (assumed links) | per-device inner steps/s (measured) "
          "| compute s/outer step | comm s/outer step | projected inner steps/s | efficiency |")
    print("|---|---|---|---|---|---|---|---|")
    for pr in projections:
        print(f"| ({pr['config']}) | {pr['devices']} | {pr['where']} | {pr['per_device_rate']:,.0f} | "
              f"{pr['t_dev_s']:.4f} | {pr['t_comm_s']:.5f} | {pr['inner_steps_per_s']:,.0f} | {pr['efficiency']:.1%} |")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    import jax
    out.write_text(json.dumps({"rows": rows, "projections": projections, "links_assumed": LINKS,
                               "steps": args.steps, "repeats": args.repeats, "rounds": args.rounds,
                               "cpu_count": os.cpu_count(),
                               "load_average_1min": load, "jax": jax.__version__}, indent=1) + "\n")
    print(f"\nwrote {out} (1-min load average at the end: {load})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
