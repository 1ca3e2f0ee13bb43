"""Scale-out: results independent of the device count; two real processes equal one process.

The device count of a JAX process is fixed when its backend starts, so every run is a separate
``learned-opt train`` subprocess (forced host devices via ``XLA_FLAGS``; 64-bit inner arithmetic
via ``JAX_ENABLE_X64`` so that only summation order can differ). The reference is the plain
single-device path (no mesh, no sharding constraints); the others shard the task axis over 2 and
4 devices, or over two processes joined by ``jax.distributed`` on a loopback coordinator.

Outer SGD without clipping makes every step's meta-gradient recoverable from the θ files:
``g_k = (θ_k - θ_{k+1}) / lr`` (to the float32 resolution of θ).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from outer_train import TrainConfig, distributed

REPO = Path(__file__).resolve().parents[1]
LR = 0.1
STEPS = 3
ARGS = ["--preset", "quadratic", "--num-tasks", "4", "--unroll-length", "5", "--trunc-length", "12",
        "--checkpoint-every", "1", "--seed", "3", "--no-progress", "--set", "outer_optimizer=sgd",
        "--set", "grad_clip=0", "--set", f"outer_lr={LR}", "--set", "tensorboard=false"]


def _env(host_devices: int | None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["JAX_PLATFORMS"] = "cpu"
    env["JAX_ENABLE_X64"] = "1"
    env.pop("XLA_FLAGS", None)
    if host_devices is not None:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={host_devices}"
    for k in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        env.pop(k, None)
    return env


def _start(out: Path, host_devices: int | None, extra: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "learned_opt", "train", *ARGS, "--out", str(out), *extra]
    return subprocess.Popen(cmd, env=_env(host_devices), cwd=out.parent, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 600) -> dict:
    stdout, stderr = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


def _thetas(out: Path) -> list[np.ndarray]:
    import learned_opt
    flat = []
    for k in range(STEPS + 1):
        _, theta = learned_opt.load(out / f"theta_{k:08d}.lopt")
        flat.append(np.concatenate([np.ravel(np.asarray(x, np.float64))
                                    for x in jax.tree_util.tree_leaves(theta)]))
    return flat


def _meta_losses(out: Path) -> list[float]:
    return [json.loads(line)["meta_loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same run on 1, 2 and 4 forced host devices (launched concurrently).

    4 devices via ``XLA_FLAGS``, 2 via the CLI's ``--host-devices`` (set before JAX starts).
    """
    base = tmp_path_factory.mktemp("devices")
    steps = ["--outer-steps", str(STEPS)]
    procs = {1: _start(base / "d1", 1, steps), 2: _start(base / "d2", None, steps + ["--host-devices", "2"]),
             4: _start(base / "d4", 4, steps)}
    return {n: (_finish(p), base / f"d{n}") for n, p in procs.items()}


def _check_same(ref_out: Path, out: Path) -> None:
    ta, tb = _thetas(ref_out), _thetas(out)
    np.testing.assert_array_equal(ta[0], tb[0])  # same initial θ
    for k in range(STEPS):
        ga, gb = (ta[k] - ta[k + 1]) / LR, (tb[k] - tb[k + 1]) / LR
        assert np.linalg.norm(ga) > 1e-3  # a real, non-trivial meta-gradient
        # θ is float32: g recovered from a θ difference is resolved to a few ulps of θ / lr
        resolution = 4 * np.finfo(np.float32).eps * (np.abs(ta[k]) + np.abs(ta[k + 1])) / LR
        bad = np.abs(gb - ga) > resolution + 1e-4 * np.abs(ga)
        assert not bad.any(), (k, np.flatnonzero(bad)[:5], gb[bad][:5], ga[bad][:5])
        np.testing.assert_allclose(tb[k + 1], ta[k + 1], rtol=1e-5, atol=1e-8, err_msg=f"θ after {k + 1} steps")
    np.testing.assert_allclose(_meta_losses(out), _meta_losses(ref_out), rtol=1e-6)


def test_meta_gradients_and_theta_do_not_depend_on_device_count(runs):
    summary1, out1 = runs[1]
    assert summary1["devices"] == 1 and summary1["step"] == STEPS
    g_steps = [(a - b) / LR for a, b in zip(_thetas(out1)[:-1], _thetas(out1)[1:])]
    assert not np.allclose(g_steps[0], g_steps[1])  # the steps see different tasks/perturbations
    for n in (2, 4):
        summary, out = runs[n]
        assert summary["devices"] == n  # the task axis really was split over n devices
        _check_same(out1, out)


@pytest.mark.slow
def test_two_processes_equal_one_process_and_resume(runs, tmp_path):
    """2 processes x 1 device, 2 steps, then a resumed run to 3: θ as a single process's."""
    _, ref_out = runs[1]
    out = tmp_path / "mp"

    def launch(steps: int, resume: bool) -> list[dict]:
        port = _free_port()
        extra = ["--outer-steps", str(steps), "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
        extra += ["--resume"] if resume else []
        procs = [_start(out, 1, extra + ["--process-id", str(i), "--compile-cache", str(tmp_path / f"cache{i}")])
                 for i in range(2)]
        return [_finish(p) for p in procs]

    first = launch(2, resume=False)
    assert [s["devices"] for s in first] == [2, 2] and [s["step"] for s in first] == [2, 2]
    assert not (out / f"theta_{STEPS:08d}.lopt").exists()
    second = launch(STEPS, resume=True)
    assert [s["step"] for s in second] == [STEPS, STEPS]
    # written once: one line per step in the log, nothing duplicated by process 1
    assert [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    _check_same(ref_out, out)


# ----------------------------------------------------------------------- in-process checks
def test_bad_device_requests_raise_clear_errors():
    with pytest.raises(ValueError, match="divisible"):
        distributed.check_divisible(6, 4)
    distributed.check_divisible(8, 4)
    with pytest.raises(ValueError, match="available"):
        distributed.resolve_device_count(jax.device_count() + 1, 8 * (jax.device_count() + 1))
    with pytest.raises(ValueError, match="devices"):
        distributed.resolve_device_count(0, 4)
    assert distributed.resolve_device_count("auto", 1) == 1
    with pytest.raises(ValueError, match="devices"):
        TrainConfig(devices=0)
    with pytest.raises(ValueError, match="devices"):
        TrainConfig(devices="all")
    assert TrainConfig(devices=2).devices == 2
    with pytest.raises(ValueError, match="process_id"):
        distributed.initialize("127.0.0.1:1234", 2, None)  # incomplete: nothing is started
    with pytest.raises(ValueError, match="HOST:PORT"):
        distributed.initialize("localhost", 2, 0)
    with pytest.raises(ValueError, match="process_id"):
        distributed.initialize("127.0.0.1:1234", 2, 2)
    with pytest.raises(ValueError, match="host device count"):
        distributed.set_host_devices(0)


def test_process_task_slices_partition_the_batch():
    slices = [distributed.process_task_slice(12, p, 3) for p in range(3)]
    assert [list(range(12))[s] for s in slices] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    with pytest.raises(ValueError, match="divisible"):
        distributed.process_task_slice(10, 0, 3)


def test_allreduce_bytes_counts_theta():
    theta = {"w": np.zeros((3, 4), np.float32), "b": np.zeros((5,), np.float64)}
    assert distributed.allreduce_bytes(theta) == 12 * 4 + 5 * 8
