"""Where the time of backprop through an unroll goes: configuration (e) of ``bench_outer.py``.

Prints, for the meta-gradient computation of (e) (truncated backprop, 8 tasks x 20 inner steps, image
MLP 64-32-10, MLP optimizer) under each remat policy (``TrainConfig.remat``):

* the compiled program's temporary memory (what the backward pass stores) and XLA's cost analysis;
* its time per call relative to the forward pass alone (same process, interleaved, medians);
* with ``--trace``: a ``jax.profiler`` trace of one policy, summed per HLO op and per op category
  (dots, fused elementwise/reduce kernels, residual-buffer initialization, dynamic-update-slices),
  with each op's JAX source (``op_name`` metadata) — the table the issue asks for;
* with ``--outer``: the whole outer step's inner steps/s of (c) (PES, forward only) and of (e) under
  each policy, interleaved, and the (e)/(c) ratio; ``legacy`` is the code path before issue 15
  (branch axis of size 1 kept in the scan, no remat) rebuilt here for the comparison.

Everything is a ratio measured in one process, so it stays meaningful on a busy machine; the
load average and CPU steal of the timed window are printed (``benchmarks/machine.py``).

    python benchmarks/profile_backprop.py [--policies legacy,none,full,dots] [--trace full] [--outer | --outer-only]
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import gzip
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _legacy_problem(problem):
    """``problem`` with the pre-issue-15 vectorized unroll: the scan keeps a branch axis of size 1
    and the reset ``lax.cond`` as before; no remat (truncated backprop stored every residual)."""
    import jax
    import jax.numpy as jnp

    from outer_train.unroll import InnerProblem

    class LegacyProblem(InnerProblem):
        def unroll_keys(self, theta_nb, ts, keys, outer_step=0, checkpoint=False):
            keys = jnp.swapaxes(keys, 0, 1)

            def body(state, k):
                advanced, out = jax.vmap(self.advance)(theta_nb, state, k)
                new_state = jax.lax.cond(
                    jnp.any(out.reset),
                    lambda s: jax.vmap(lambda th, si, r, kk: self.reset_where(th, si, r, kk, outer_step))(
                        theta_nb, s, out.reset, k),
                    lambda s: s, advanced)
                return new_state, out

            if checkpoint not in (False, "none"):
                body = jax.checkpoint(body)
            final, out = jax.lax.scan(body, ts, keys)
            return final, jax.tree_util.tree_map(lambda x: jnp.swapaxes(x, 0, 1), out)

    fields = {f.name: getattr(problem, f.name) for f in dataclasses.fields(problem)}
    return LegacyProblem(**fields)


def _estimator(policy: str):
    """The (e) estimator under ``policy`` (``legacy``: the old unroll, see :func:`_legacy_problem`)."""
    from benchmarks.bench_outer import build
    est, state, _ = build("e", "none" if policy == "legacy" else policy)
    if policy == "legacy":
        est = dataclasses.replace(est, problem=_legacy_problem(est.problem))
    return est, state


def _meta_grad_fns(policies):
    """Compiled ``value_and_grad`` of (e)'s objective per policy, plus ``fwd`` (objective only)."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    out = {}
    for policy in ["fwd"] + list(policies):
        est, state = _estimator("full" if policy == "fwd" else policy)
        es = state.est_state
        key = jax.random.PRNGKey(1)
        flat, unravel = ravel_pytree(state.theta)
        flat_nb = jnp.broadcast_to(flat, (est.num_tasks, 1, flat.size))

        def objective(fb, ts, est=est, es=es, unravel=unravel, key=key):
            return est._objective(fb, ts, key, es.outer_step, unravel)[0]

        fn = objective if policy == "fwd" else jax.value_and_grad(objective)
        t0 = time.perf_counter()
        compiled = jax.jit(fn).lower(flat_nb, es.tasks).compile()
        compile_s = time.perf_counter() - t0
        cost = compiled.cost_analysis()
        cost = (cost[0] if isinstance(cost, list) else cost) or {}
        memory = compiled.memory_analysis()
        out[policy] = dict(compiled=compiled, args=(flat_nb, es.tasks), compile_s=compile_s,
                           temp_mb=memory.temp_size_in_bytes / 2 ** 20 if memory is not None else float("nan"),
                           flops=float(cost.get("flops", float("nan"))),
                           bytes=float(cost.get("bytes accessed", float("nan"))))
    return out


def _interleaved(fns: dict, repeats: int, calls: int) -> dict:
    """Median seconds per call of each ``fns[name]()``, timed round-robin."""
    import jax
    for f in fns.values():
        jax.block_until_ready(f())
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                jax.block_until_ready(f())
            times[k].append((time.perf_counter() - t0) / calls)
    return {k: statistics.median(v) for k, v in times.items()}


def _trace_table(compiled, args, top: int) -> None:
    """Profile a few calls and print time per HLO op category and the top ops with their source."""
    import jax
    hlo = compiled.as_text()
    meta = {m.group(1): m.group(2) for m in
            re.finditer(r"^\s*%?([\w.\-]+) = [^\n]*?metadata=\{op_name=\"([^\"]*)\"", hlo, re.M)}
    calls = 3
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d, create_perfetto_trace=True):
            for _ in range(calls):
                jax.block_until_ready(compiled(*args))
        path = glob.glob(d + "/**/*perfetto_trace.json.gz", recursive=True)[0]
        with gzip.open(path) as f:
            events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    containers = ("ThunkExecutor", "$", "SlinkyThreadPool", "while", "call", "conditional", "cond")
    per_op, count = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("ph") == "X" and not e["name"].startswith(containers):
            per_op[e["name"]] += e.get("dur", 0) / calls / 1e3
            count[e["name"]] += 1
    total = sum(per_op.values())
    per_kind = collections.Counter()
    for name, ms in per_op.items():
        per_kind[re.sub(r"[.\d]+$", "", name)] += ms
    print(f"  leaf HLO ops: {total:.1f} ms per call")
    for kind, ms in per_kind.most_common(12):
        print(f"    {kind:<40} {ms:8.1f} ms  {ms / total:6.1%}")
    print(f"  top {top} ops (ms per call, executions per call, JAX source):")
    for name, ms in per_op.most_common(top):
        print(f"    {ms:7.2f} ms {count[name] // calls:4d}x  {name:<34} {meta.get(name, '')[-90:]}")


def _outer(policies, repeats: int) -> None:
    """Outer-step inner steps/s of (c) and of (e) per policy, interleaved."""
    import jax

    from benchmarks.bench_outer import build
    from outer_train.config import TrainConfig
    from outer_train.trainer import make_outer_optimizer, make_outer_step

    runs = {}
    for policy in ["c"] + list(policies):
        if policy == "c":
            est, state, step = build("c")
        else:
            est, state = _estimator(policy)
            config = TrainConfig(optimizer="mlp", estimator="tbptt", outer_lr=1e-3, grad_clip=1.0, progress=False)
            step = make_outer_step(est, make_outer_optimizer(config))
        compiled = jax.jit(step).lower(state).compile()
        state, m = compiled(state)
        jax.device_get(m)
        runs[policy] = [est, compiled, state]

    def run(policy):
        def f():
            est, compiled, state = runs[policy]
            for _ in range(3):
                state, m = compiled(state)
                jax.device_get(m)
            runs[policy][2] = state
            return m
        return f

    from benchmarks.machine import Window
    with Window() as w:
        sec = _interleaved({p: run(p) for p in runs}, repeats, 1)
    rates = {p: runs[p][0].inner_steps * 3 / s for p, s in sec.items()}
    print(f"\nouter step, inner steps/s (median of {repeats} interleaved blocks of 3 outer steps):")
    for p, r in rates.items():
        label = "(c) PES" if p == "c" else f"(e) tbptt remat={p}"
        ratio = "" if p == "c" else f"   (e)/(c) = {r / rates['c']:.3f}"
        print(f"  {label:<28} {r:9.0f}{ratio}")
    print("  machine:", w.summary())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--policies", default="legacy,none,full,dots",
                   help="comma list of remat policies (and 'legacy', the pre-issue-15 unroll)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--trace", default=None, help="profile this policy (e.g. full) op by op")
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--outer", action="store_true", help="also time whole outer steps of (c) and (e)")
    p.add_argument("--outer-only", action="store_true", help="only the outer-step comparison")
    args = p.parse_args(argv)
    policies = [s.strip() for s in args.policies.split(",") if s.strip()]
    if args.outer_only:
        _outer(policies, args.repeats)
        return 0

    from benchmarks.machine import Window
    fns = _meta_grad_fns(policies)
    print("(e) meta-gradient, one call = 8 tasks x 20 inner steps")
    print(f"  {'policy':<8} {'compile s':>9} {'temp MB':>8} {'GFLOP':>7} {'GB accessed':>11}")
    for k, v in fns.items():
        print(f"  {k:<8} {v['compile_s']:9.1f} {v['temp_mb']:8.1f} {v['flops'] / 1e9:7.2f} {v['bytes'] / 1e9:11.3f}")
    print("  (XLA's cost analysis counts a while-loop body once, not per iteration)")
    with Window() as w:
        sec = _interleaved({k: (lambda v=v: v["compiled"](*v["args"])) for k, v in fns.items()}, args.repeats, 2)
    print(f"  time per call (median of {args.repeats} interleaved blocks):")
    for k, s in sec.items():
        print(f"    {k:<8} {s * 1e3:8.1f} ms   {s / sec['fwd']:5.2f}x the forward pass")
    print("  machine:", w.summary())
    if args.trace:
        print(f"\nprofile of remat={args.trace}:")
        _trace_table(fns[args.trace]["compiled"], fns[args.trace]["args"], args.top)
    if args.outer:
        _outer(policies, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
