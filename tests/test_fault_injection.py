"""Fault injection (issue 12): kill -9 while a checkpoint is written, damaged and truncated
checkpoint files, a full disk, a task whose loss turns NaN/inf mid-unroll, two processes on one
run directory. Each test asserts what survives against values saved independently of the code
under test (the exact arrays that were saved, bit for bit)."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from outer_train import checkpointing as C
from outer_train.run_lock import LOCK_FILE, RunLockError, lock_holder, run_lock

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _state(step: int, n: int = 1000) -> dict:
    """The state saved at ``step`` — a pure function of ``step``, so any file can be checked."""
    rng = np.random.default_rng(step)
    return {"a": rng.standard_normal(n).astype(np.float32), "i": np.arange(7, dtype=np.int32) * step,
            "step": np.asarray(step, np.int32)}


def _assert_is_state(leaves: list, step: int) -> None:
    want = jax.tree_util.tree_leaves(_state(step, leaves[0].size))
    assert len(leaves) == len(want)
    for got, exp in zip(leaves, want):
        assert got.dtype == exp.dtype and got.tobytes() == exp.tobytes()


def _saved(d: Path, steps) -> None:
    for s in steps:
        C.save_state(d, _state(s), {"step": s})


# ------------------------------------------------------------------ generations and fallback
def test_two_checksummed_generations_are_kept(tmp_path):
    _saved(tmp_path, [1, 2, 3])
    header, leaves = C.read_verified(tmp_path / C.RESUME_FILE)
    assert header["info"]["step"] == 3 and len(header["sha256"]) == 3
    _assert_is_state(leaves, 3)
    header, leaves = C.read_verified(tmp_path / C.PREVIOUS_FILE)
    assert header["info"]["step"] == 2
    _assert_is_state(leaves, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [C.RESUME_FILE, C.PREVIOUS_FILE]


@pytest.mark.parametrize("damage", ["flip_data_byte", "truncate_half", "truncate_to_100", "empty", "garbage"])
def test_damaged_newest_falls_back_to_previous_with_one_warning(tmp_path, damage):
    _saved(tmp_path, [4, 5])
    newest = tmp_path / C.RESUME_FILE
    raw = bytearray(newest.read_bytes())
    if damage == "flip_data_byte":  # inside leaf_00000's array data (after its .npy header)
        raw[len(raw) // 3] ^= 0x40
    elif damage == "truncate_half":
        raw = raw[: len(raw) // 2]
    elif damage == "truncate_to_100":
        raw = raw[:100]
    elif damage == "empty":
        raw = bytearray()
    else:
        raw = bytearray(b"not a checkpoint\n" * 10)
    newest.write_bytes(bytes(raw))
    warnings: list[str] = []
    state, info = C.load_state(tmp_path, _state(0), warn=warnings.append)
    assert info["step"] == 4
    _assert_is_state(jax.tree_util.tree_leaves(jax.device_get(state)), 4)
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert str(newest) in warnings[0] and C.PREVIOUS_FILE in warnings[0]


def test_random_byte_corruption_never_yields_a_wrong_state(tmp_path):
    """Flip one random byte of the newest checkpoint, 40 times: every load returns exactly the
    newest or (with a warning) exactly the previous saved state — never anything else."""
    _saved(tmp_path, [10, 11])
    newest = tmp_path / C.RESUME_FILE
    good = newest.read_bytes()
    rng = np.random.default_rng(0)
    outcomes = {10: 0, 11: 0}
    for _ in range(40):
        raw = bytearray(good)
        pos = int(rng.integers(len(raw)))
        raw[pos] ^= 1 << int(rng.integers(8))
        newest.write_bytes(bytes(raw))
        warnings: list[str] = []
        state, info = C.load_state(tmp_path, _state(0), warn=warnings.append)
        step = info["step"]
        _assert_is_state(jax.tree_util.tree_leaves(jax.device_get(state)), step)
        assert (step == 10) == bool(warnings), (pos, warnings)
        outcomes[step] += 1
    assert outcomes[10] > 20  # most single-byte flips are detected (data, CRCs, headers)


def test_no_usable_checkpoint_is_one_clear_error(tmp_path):
    _saved(tmp_path, [1, 2])
    (tmp_path / C.RESUME_FILE).write_bytes(b"x")
    (tmp_path / C.PREVIOUS_FILE).write_bytes((tmp_path / C.PREVIOUS_FILE).read_bytes()[:50])
    with pytest.raises(C.CheckpointError) as info:
        C.load_state(tmp_path, _state(0), warn=None)
    msg = str(info.value)
    assert "\n" not in msg and C.RESUME_FILE in msg and C.PREVIOUS_FILE in msg


def test_structure_mismatch_is_an_error_not_a_fallback(tmp_path):
    _saved(tmp_path, [1, 2])
    with pytest.raises(C.CheckpointError, match="does not match"):
        C.load_state(tmp_path, {"other": np.zeros(3)}, warn=None)


# ------------------------------------------------------------------------------- full disk
class _FullDisk:
    """``open`` replacement whose files named ``*only*`` accept ``limit`` bytes, then raise ENOSPC."""

    def __init__(self, limit: int, only: str = ""):
        self.limit, self.only = limit, only

    def __call__(self, path, mode="r", *args, **kwargs):
        f = open(path, mode, *args, **kwargs)
        if self.only not in Path(path).name:
            return f
        limit = self.limit

        class Full:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                f.close()

            def write(self, data):
                nonlocal limit
                f.write(data[:limit])
                if len(data) > limit:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
                limit -= len(data)
                return len(data)

            def __getattr__(self, name):
                return getattr(f, name)

        return Full()


def test_full_disk_leaves_both_generations_intact(tmp_path, monkeypatch):
    _saved(tmp_path, [1, 2])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    monkeypatch.setattr(C, "open", _FullDisk(limit=300), raising=False)
    with pytest.raises(OSError) as info:
        C.save_state(tmp_path, _state(3), {"step": 3})
    assert info.value.errno == errno.ENOSPC
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no partial file left


def test_silently_corrupted_write_is_caught_before_it_replaces_anything(tmp_path, monkeypatch):
    """A write that 'succeeds' but stores wrong bytes is caught by the read-back verification."""
    _saved(tmp_path, [1, 2])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_serialize = C._serialize

    def bad_serialize(*args):
        data = bytearray(real_serialize(*args))
        data[len(data) // 3] ^= 0xFF
        return bytes(data)

    monkeypatch.setattr(C, "_serialize", bad_serialize)
    with pytest.raises(C.CheckpointError):
        C.save_state(tmp_path, _state(3), {"step": 3})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


# ------------------------------------------------------------- kill -9 during checkpoint writing
KILL_SCRIPT = textwrap.dedent("""
    import builtins, json, os, random, signal, sys, time
    from pathlib import Path
    import numpy as np
    from outer_train import checkpointing as C
    sys.path.insert(0, sys.argv[2])
    from test_fault_injection import _state

    d = Path(sys.argv[1])
    rng = random.Random(1234)
    N = 400_000  # 1.6 MB per checkpoint: writes take a while, so timed kills land mid-save
    for s in (0, 1):
        C.save_state(d, _state(s, N), {"step": s})
    # the stages of save_state, each killed at its 1st or 2nd occurrence, then 4 timed kills
    stages = ("write", "fsync", "link", "replace", "after_replace", "replace_prev", "after_replace_prev")
    points = ([(stage, rng.choice([1, 2])) for stage in stages]
              + [("timed", rng.uniform(0.0, 0.4)) for _ in range(4)])
    results, step = [], 2
    for stage, arg in points:
        pid = os.fork()
        if pid == 0:  # the writer: save checkpoints step, step+1, ... until killed
            calls = {"n": 0}
            def hit(name):
                if name == stage:
                    calls["n"] += 1
                    if calls["n"] == arg:
                        os.kill(os.getpid(), signal.SIGKILL)
            real_open, real_fsync, real_link, real_replace = builtins.open, os.fsync, os.link, os.replace
            class Half:
                def __init__(self, f): self.f = f
                def __enter__(self): return self
                def __exit__(self, *e): self.f.close()
                def write(self, data):
                    self.f.write(data[: len(data) // 2]); self.f.flush(); hit("write")
                    return self.f.write(data[len(data) // 2:])
                def __getattr__(self, k): return getattr(self.f, k)
            C.open = lambda *a, **k: Half(real_open(*a, **k))
            os.fsync = lambda fd: (hit("fsync"), real_fsync(fd))[1]
            os.link = lambda a, b: (hit("link"), real_link(a, b))[1]
            def replace(a, b):
                name = "replace" if Path(b).name == C.RESUME_FILE else "replace_prev"
                hit(name)
                real_replace(a, b)
                hit("after_" + name)
            os.replace = replace
            s = step
            while True:
                C.save_state(d, _state(s, N), {"step": s})
                s += 1
        if stage == "timed":
            time.sleep(arg)
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        leftovers = sorted(p.name for p in d.iterdir() if ".tmp" in p.name)
        gens = {}
        for name in (C.RESUME_FILE, C.PREVIOUS_FILE):
            header, leaves = C.read_verified(d / name)  # raises if not complete
            k = header["info"]["step"]
            want = [np.asarray(x) for x in _state(k, N).values()]
            gens[name] = k if all(a.tobytes() == b.tobytes() for a, b in zip(leaves, want)) else "WRONG"
        warned = []
        C.load_state(d, _state(0, N), warn=warned.append)
        results.append({"stage": stage, "killed": killed, "gens": gens, "warned": warned,
                        "leftovers": leftovers})
        step = gens[C.RESUME_FILE] + 1
    print(json.dumps(results))
""")


def test_kill_9_during_checkpoint_writes_leaves_a_complete_checkpoint(tmp_path):
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(tmp_path), str(REPO / "tests")],
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(results) == 11
    for r in results:
        assert r["killed"], r
        newest, prev = r["gens"][C.RESUME_FILE], r["gens"][C.PREVIOUS_FILE]
        assert newest != "WRONG" and prev != "WRONG", r
        assert prev < newest, r  # two distinct, ordered generations
        assert r["warned"] == [], r  # the newest one is always usable: no fallback needed
    by_stage = {r["stage"]: r for r in results}
    assert by_stage["write"]["leftovers"], "a kill mid-write leaves only a temporary file behind"
    # the next save cleans the temporaries of killed writers up
    C.save_state(tmp_path, _state(99, 400_000), {"step": 99})
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


# ---------------------------------------------------------------------------------- run lock
HOLD_SCRIPT = textwrap.dedent("""
    import sys, time
    from outer_train.run_lock import run_lock
    with run_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(120)
""")


def test_second_trainer_on_a_locked_run_directory_exits_with_one_line(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_SCRIPT, str(tmp_path)], env=_env(),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert lock_holder(tmp_path)["pid"] == holder.pid
        proc = subprocess.run([sys.executable, "-m", "learned_opt", "train", "--preset", "quadratic_sgd",
                               "--outer-steps", "2", "--no-progress", "--out", str(tmp_path)],
                              env=_env(), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and f"in use by process {holder.pid}" in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr
        assert not (tmp_path / C.RESUME_FILE).exists()  # the second process wrote nothing
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing: its lock is stale and is taken over with a warning
    warnings: list[str] = []
    with run_lock(tmp_path, warn=warnings.append):
        assert lock_holder(tmp_path)["pid"] == os.getpid()
    assert len(warnings) == 1 and f"process {holder.pid}" in warnings[0] and "stale" in warnings[0]
    assert lock_holder(tmp_path) is None and (tmp_path / LOCK_FILE).read_text() == ""


def test_run_lock_is_exclusive_within_a_process_and_released_on_exit(tmp_path):
    warnings: list[str] = []
    with run_lock(tmp_path, warn=warnings.append):
        with pytest.raises(RunLockError, match=f"in use by process {os.getpid()}"):
            with run_lock(tmp_path, warn=warnings.append):
                pass
    with run_lock(tmp_path, warn=warnings.append):  # released cleanly: no stale warning
        pass
    assert warnings == []


# ------------------------------------------------------------------- NaN / inf mid-unroll
class _BadAfter:
    """A quadratic whose loss becomes ``value`` (NaN or inf) after ``t`` evaluations."""

    name = "bad_after"
    datasets = None

    def __init__(self, t: int, value: float):
        self.t, self.value = t, value

    def init_with_state(self, key):
        return {"x": jax.random.normal(key, (3,))}, jnp.zeros((), jnp.int32)

    def loss_with_state(self, params, state, key, batch):
        loss = jnp.sum(params["x"] ** 2) * jnp.where(state >= self.t, self.value, 1.0)
        return loss, state + 1


@pytest.mark.parametrize("value,kind", [(float("nan"), "pes"), (float("inf"), "tbptt"), (float("inf"), "es")])
def test_nonfinite_inner_loss_keeps_theta_finite_and_is_counted(value, kind, tmp_path):
    from learned_opt.learnable_hand import LearnableSGD
    from outer_train import ConstantSchedule, FixedTaskFamily, InnerProblem, TrainConfig, make_estimator, train
    lopt = LearnableSGD(0.1)
    prob = InnerProblem(FixedTaskFamily(_BadAfter(5, value)), lopt, ConstantSchedule(8))
    est = make_estimator(kind, prob, num_tasks=2, unroll_length=3, sigma=0.05, random_offsets=False)
    config = TrainConfig(optimizer="sgd", outer_steps=6, outer_lr=0.1, progress=False, out=str(tmp_path),
                         checkpoint_every=3)
    result = train(config, lopt=lopt, estimator=est)
    assert np.isfinite(float(result.theta["log_lr"]))
    # each of the 2 tasks hits the bad loss once per 9-step trajectory (18 inner steps ran): 2-4 events
    counted = sum(r["num_nonfinite_loss"] for r in result.history)
    assert 2 <= counted <= 4, [r["num_nonfinite_loss"] for r in result.history]
    logged = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert sum(r["num_nonfinite_loss"] for r in logged) == counted
    state, _ = C.load_state(tmp_path, result_template(config, lopt, est), warn=None)
    for leaf in jax.tree_util.tree_leaves(state.theta) + jax.tree_util.tree_leaves(state.opt_state):
        assert np.all(np.isfinite(np.asarray(leaf)))


def result_template(config, lopt, est):
    from outer_train.trainer import init_state, make_outer_optimizer
    return init_state(config, lopt, est, make_outer_optimizer(config))


# ------------------------------------------------------------- the CLI on damaged run dirs
def _train_args(out: Path) -> list[str]:
    return ["train", "--preset", "quadratic_sgd", "--outer-steps", "4", "--checkpoint-every", "2",
            "--num-tasks", "2", "--unroll-length", "3", "--trunc-length", "6", "--no-progress", "--out", str(out)]


def test_cli_full_disk_damaged_and_unusable_checkpoints(tmp_path, capsys, monkeypatch):
    """One short run, then through the command line: (a) the disk fills up while the next
    checkpoint is written — one error line, exit 2, both generations untouched; (b) the newest
    checkpoint is truncated — one warning naming it, resume from the previous generation;
    (c) both generations are damaged — one error line, exit 2."""
    from learned_opt.cli import main
    out = tmp_path / "run"
    assert main(_train_args(out)) == 0
    assert C.read_info(out)["step"] == 4 and C.read_verified(out / C.PREVIOUS_FILE)[0]["info"]["step"] == 2
    resume = ["train", "--resume", "--out", str(out), "--no-progress"]
    # (a) full disk while the resume checkpoint is written (config.json still fits)
    good = {p.name: p.read_bytes() for p in out.iterdir() if p.name.startswith("resume")}
    with monkeypatch.context() as m:
        m.setattr(C, "open", _FullDisk(limit=1000, only=f".{C.RESUME_FILE}.tmp"), raising=False)
        capsys.readouterr()
        assert main(resume + ["--outer-steps", "6"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0], err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name.startswith("resume")} == good
    assert not [p for p in out.iterdir() if ".tmp" in p.name]
    # (b) damaged newest: resume from step 2 with one warning line naming the file
    raw = (out / C.RESUME_FILE).read_bytes()
    (out / C.RESUME_FILE).write_bytes(raw[: len(raw) // 2])
    assert main(resume) == 0
    err = capsys.readouterr().err
    warn_lines = [x for x in err.splitlines() if x.startswith("warning:")]
    assert len(warn_lines) == 1 and str(out / C.RESUME_FILE) in warn_lines[0] and "(step 2)" in warn_lines[0]
    assert "Traceback" not in err
    # the run's config.json now says 6 outer steps (written by (a)); metrics were truncated to the
    # restored step 2 (dropping (a)'s steps 3-6), then steps 3-6 were re-run once
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert C.read_info(out)["step"] == 6
    # (c) both damaged: one error line, exit 2
    (out / C.RESUME_FILE).write_bytes(b"")
    (out / C.PREVIOUS_FILE).write_bytes(b"junk")
    assert main(resume) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("learned-opt train: error: no usable resume checkpoint"), err

def test_filesystem_without_locks_warns_and_proceeds(tmp_path, monkeypatch):
    import fcntl

    from outer_train import run_lock as R
    real = fcntl.flock

    def no_locks(fd, op):
        if op & fcntl.LOCK_EX:
            raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
        return real(fd, op)

    monkeypatch.setattr(R.fcntl, "flock", no_locks)
    warnings: list[str] = []
    with run_lock(tmp_path, warn=warnings.append):
        pass
    assert len(warnings) == 1 and "does not support file locks" in warnings[0]
