"""Checkpoints (save/load/as_optax, run directories) and learned optimizers through `minimize`."""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import serialization

import learned_opt
from learned_opt import checkpoint as ck
from learned_opt.registry import get_optimizer, optimizer_names

CONFIGS = {
    "mlp": {"hidden_sizes": [8], "momentum_decays": [0.5, 0.99]},
    "factored_mlp": {"hidden_sizes": [4, 4]},
    "hierarchical": {"rnn_size": 4, "hidden_sizes": [8]},
    "scheduled_adam": {"tensor_hidden": [8], "row_hidden": [4], "learning_rate": 0.01},
    "sgd": {"learning_rate": 0.3},
    "momentum": {"learning_rate": 0.01, "momentum": 0.5},
    "adam": {"learning_rate": 0.02, "b1": 0.8},
}


def random_theta(lopt, seed):
    theta = lopt.init(jax.random.PRNGKey(seed))
    # move away from the init so that a loader re-running init() could not fake the round trip
    return jax.tree_util.tree_map(lambda x: x + jax.random.normal(jax.random.PRNGKey(seed + 1), x.shape) * 0.01,
                                  theta)


@pytest.mark.parametrize("name", optimizer_names())
def test_round_trip_is_bit_exact(tmp_path, name):
    lopt = get_optimizer(name, **CONFIGS[name])
    theta = random_theta(lopt, 5)
    path = learned_opt.save(tmp_path / "x.lopt", lopt, theta, metadata={"step": 12, "note": "ok"})
    loaded, theta2 = learned_opt.load(path)
    assert type(loaded) is type(lopt) and loaded.config() == lopt.config()
    assert jax.tree_util.tree_structure(theta2) == jax.tree_util.tree_structure(theta)
    for a, b in zip(jax.tree_util.tree_leaves(theta), jax.tree_util.tree_leaves(theta2)):
        assert np.asarray(a).dtype == np.asarray(b).dtype
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    _, _, meta = ck.load_record(path)
    assert meta == {"step": 12, "note": "ok"}


def test_as_optax_from_path_equals_opt_fn(tmp_path):
    lopt = learned_opt.MLPLOpt(hidden_sizes=(8,))
    theta = random_theta(lopt, 1)
    path = learned_opt.save(tmp_path / "m.lopt", lopt, theta)
    params = {"w": jnp.linspace(-1, 1, 6).reshape(2, 3)}
    grads = {"w": jnp.cos(params["w"])}
    expect, _ = lopt.opt_fn(theta, num_steps=7).update(grads, lopt.opt_fn(theta, 7).init(params), params)
    for source in (path, str(path), theta):
        tx = learned_opt.as_optax(source, num_steps=7, lopt=lopt)
        got, _ = tx.update(grads, tx.init(params), params, loss=1.0)
        np.testing.assert_array_equal(np.asarray(got["w"]), np.asarray(expect["w"]))
    with pytest.raises(ValueError, match="lopt="):
        learned_opt.as_optax(theta)
    with pytest.raises(ValueError, match="differs"):
        learned_opt.as_optax(path, lopt=learned_opt.MLPLOpt())


def test_run_directory_loads_highest_step(tmp_path):
    lopt = learned_opt.LearnableAdam()
    for step, lr in [(5, 0.1), (120, 0.3), (40, 0.2)]:
        ck.save_step(tmp_path, step, lopt, {**lopt.init(None), "log_lr": jnp.float32(np.log(lr))})
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    assert sorted(p.name for p in tmp_path.glob("*.lopt")) == [
        "theta_00000005.lopt", "theta_00000040.lopt", "theta_00000120.lopt"]
    assert ck.latest_checkpoint(tmp_path).name == "theta_00000120.lopt"
    _, theta = learned_opt.load(tmp_path)
    assert float(theta["log_lr"]) == pytest.approx(np.log(0.3))
    with pytest.raises(FileNotFoundError):
        learned_opt.load(tmp_path / "empty_dir_does_not_exist")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="theta_"):
        learned_opt.load(tmp_path / "empty")


def test_corrupted_truncated_and_foreign_files_raise_value_error(tmp_path):
    lopt = learned_opt.FactoredMLPLOpt()
    path = learned_opt.save(tmp_path / "f.lopt", lopt, random_theta(lopt, 2))
    data = path.read_bytes()
    cases = {
        "truncated": data[: len(data) // 2],
        "bitflip": data[:-40] + bytes([data[-40] ^ 0x10]) + data[-39:],
        "empty": b"",
        "foreign": serialization.msgpack_serialize({"hello": np.zeros(3)}),
        "text": b"just some text",
    }
    for label, blob in cases.items():
        bad = tmp_path / f"{label}.lopt"
        bad.write_bytes(blob)
        with pytest.raises(ValueError, match="checkpoint"):
            learned_opt.load(bad)


def _rewrite_payload(path, **changes):
    record = serialization.msgpack_restore(path.read_bytes())
    payload = serialization.msgpack_restore(record["payload"])
    payload.update(changes)
    raw = serialization.msgpack_serialize(payload)
    import hashlib
    record.update(payload=raw, sha256=hashlib.sha256(raw).hexdigest())
    path.write_bytes(serialization.msgpack_serialize(record))


def test_mismatched_contents_raise_value_error(tmp_path):
    lopt = learned_opt.MLPLOpt(hidden_sizes=(8,))
    theta = random_theta(lopt, 3)
    path = learned_opt.save(tmp_path / "m.lopt", lopt, theta)
    # θ for another architecture
    _rewrite_payload(path, config=json.dumps(learned_opt.MLPLOpt(hidden_sizes=(16,)).config()))
    with pytest.raises(ValueError, match="shape"):
        learned_opt.load(path)
    path = learned_opt.save(tmp_path / "m.lopt", lopt, theta)
    _rewrite_payload(path, config=json.dumps({"hidden_sizes": [8], "bogus": 1}))
    with pytest.raises(ValueError, match="bogus"):
        learned_opt.load(path)
    path = learned_opt.save(tmp_path / "m.lopt", lopt, theta)
    record = serialization.msgpack_restore(path.read_bytes())
    record["format_version"] = ck.FORMAT_VERSION + 1
    path.write_bytes(serialization.msgpack_serialize(record))
    with pytest.raises(ValueError, match="newer"):
        learned_opt.load(path)
    # saving a θ that does not belong to the optimizer is refused
    with pytest.raises(ValueError, match="does not match MLPLOpt"):
        learned_opt.save(tmp_path / "bad.lopt", learned_opt.MLPLOpt(), theta)
    with pytest.raises(TypeError, match="metadata"):
        learned_opt.save(tmp_path / "bad.lopt", lopt, theta, metadata={"x": object()})


@pytest.mark.parametrize("name", optimizer_names())
def test_minimize_runs_learned_optimizers_and_passes_the_loss(name):
    """learned_opt.minimize(fun, x0, method=opt_fn(θ)) equals a hand-written optax loop that passes
    loss=f(x) to the update."""
    lopt = get_optimizer(name, **CONFIGS[name])
    theta = random_theta(lopt, 4)
    target = {"a": jnp.asarray([1.0, -2.0, 0.5]), "b": jnp.asarray([[0.3, 0.1], [0.0, -0.4]])}

    def fun(x):
        return jnp.sum((x["a"] - target["a"]) ** 2) + jnp.sum(jnp.cos(x["b"] - target["b"]))

    x0 = {"a": jnp.zeros(3), "b": jnp.ones((2, 2))}
    n = 6
    tx = lopt.opt_fn(theta, num_steps=n)
    res = learned_opt.minimize(fun, x0, method=tx, options={"maxiter": n})
    assert set(res.x) == {"a", "b"}

    step = jax.jit(lambda x, s: _manual_step(tx, fun, x, s))
    x, s = x0, tx.init(x0)
    for _ in range(n):
        x, s = step(x, s)
    for k in x0:
        np.testing.assert_allclose(np.asarray(res.x[k]), np.asarray(x[k]), rtol=1e-5, atol=1e-7)
    assert not np.allclose(np.asarray(x["a"]), np.asarray(x0["a"]))


def _manual_step(tx, fun, x, s):
    loss, g = jax.value_and_grad(fun)(x)
    u, s = tx.update(g, s, x, loss=loss)
    return optax.apply_updates(x, u), s
