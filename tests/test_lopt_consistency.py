"""Every learned optimizer gives the same updates eagerly, under ``jit``, as one row of a ``vmap``
over θ and as one task of a ``vmap`` over tasks (1e-5 relative in float32, 1e-10 in float64).

The problems are built to hit the cases where compilation-dependent rounding used to be amplified
(issue 12): an all-equal weight matrix, a zero-initialized bias (all-equal gradient), a scalar gain,
a parameter the loss ignores (zero tensor, zero gradient) and gradients scaled by 1e-8 and 1e8.
The reference is the eager (un-jitted, un-vmapped) run; each other mode is compared to it.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from learned_opt.registry import get_optimizer, optimizer_names

NUM_UPDATES = 2  # the second update also checks the state carried from the first
SCALES = (1.0, 1e-8, 1e8)
RTOL = {jnp.float32: 1e-5, jnp.float64: 1e-10}


def _params(dtype) -> dict:
    r = jax.random.normal(jax.random.PRNGKey(3), (4,), jnp.float32)
    return {"w": jnp.ones((7, 5), dtype) * 0.3,  # all-equal
            "b": jnp.zeros((5,), dtype),  # zero, with an all-equal gradient
            "s": jnp.asarray(2.0, dtype),  # scalar
            "z": jnp.zeros((3,), dtype),  # not in the loss: zero tensor, zero gradient
            "r": r.astype(dtype)}  # generic


def _stream(dtype, scale: float, data_seed: int):
    """A fixed sequence of (grads, loss) — computed at the initial parameters on NUM_UPDATES
    batches, times ``scale`` — so every mode sees identical inputs."""
    params = _params(dtype)

    def loss_fn(p, x):
        out = jnp.tanh(x @ p["w"] + p["b"]) * p["s"] - 0.5
        return scale * (jnp.mean(out ** 2) + jnp.mean((p["r"] - 1.0) ** 2))

    xs = jax.random.normal(jax.random.PRNGKey(data_seed), (NUM_UPDATES, 16, 7), jnp.float32).astype(dtype)
    losses, grads = [], []
    for t in range(NUM_UPDATES):
        loss, g = jax.value_and_grad(loss_fn)(params, xs[t])
        losses.append(loss)
        grads.append(g)
    stack = lambda *a: jnp.stack(a)  # noqa: E731
    return params, jax.tree_util.tree_map(stack, *grads), jnp.stack(losses)


def _run(lopt, theta, params, grads, losses):
    """NUM_UPDATES updates; returns the stacked updates (a dict of [T, ...] arrays)."""
    tx = lopt.opt_fn(theta, num_steps=50)
    state = tx.init(params)
    ups = []
    for t in range(NUM_UPDATES):
        g = jax.tree_util.tree_map(lambda x, t=t: x[t], grads)
        u, state = tx.update(g, state, params, loss=losses[t])
        params = optax.apply_updates(params, u)
        ups.append(u)
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *ups)


def _cast_theta(theta, dtype):
    return jax.tree_util.tree_map(
        lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, theta)


def _close(actual, ref, rtol: float, what: str) -> None:
    """Leafwise ``|a - r| <= rtol * max|r|`` (relative to the leaf's scale; exact zeros must
    stay zero)."""
    for key in ref:
        a, r = np.asarray(actual[key], np.float64), np.asarray(ref[key], np.float64)
        assert np.all(np.isfinite(a)) and np.all(np.isfinite(r)), (what, key)
        scale = np.max(np.abs(r))
        err = np.max(np.abs(a - r))
        assert err <= rtol * scale, f"{what}: leaf {key!r} differs by {err:.3g} (scale {scale:.3g}, rtol {rtol})"


def _check_all_modes(name: str, dtype, **kwargs) -> None:
    rtol = RTOL[dtype]
    lopt = get_optimizer(name, **kwargs)
    theta = _cast_theta(lopt.init(jax.random.PRNGKey(0)), dtype)
    # a second θ (perturbed), so the θ-vmap has two genuinely different rows
    leaves, treedef = jax.tree_util.tree_flatten(theta)
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    theta2 = jax.tree_util.tree_unflatten(treedef, [
        x + (0.05 * jax.random.normal(k, jnp.shape(x), jnp.float32)).astype(x.dtype) for x, k in zip(leaves, keys)])
    run = lambda th, p, g, l: _run(lopt, th, p, g, l)  # noqa: E731
    jitted = jax.jit(run)
    theta_rows = jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), theta, theta2)
    vmap_theta = jax.jit(jax.vmap(run, in_axes=(0, None, None, None)))
    vmap_tasks = jax.jit(jax.vmap(run, in_axes=(None, 0, 0, 0)))

    streams = [_stream(dtype, scale, 10 + i) for i, scale in enumerate(SCALES)]
    refs = []
    for scale, (params, grads, losses) in zip(SCALES, streams):
        ref = run(theta, params, grads, losses)  # eager
        refs.append(ref)
        tag = f"{name} {jnp.dtype(dtype).name} scale {scale:g}"
        _close(jitted(theta, params, grads, losses), ref, rtol, f"{tag}: jit vs eager")
        rows = vmap_theta(theta_rows, params, grads, losses)
        _close(jax.tree_util.tree_map(lambda x: x[0], rows), ref, rtol, f"{tag}: vmap-θ row 0 vs single θ")
        other = jitted(theta2, params, grads, losses)
        _close(jax.tree_util.tree_map(lambda x: x[1], rows), other, rtol, f"{tag}: vmap-θ row 1 vs single θ")
        assert not np.allclose(np.asarray(other["r"]), np.asarray(ref["r"]), rtol=1e-3, atol=0), "θ rows must differ"
    # one batch holding all three gradient scales at once
    batched = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *streams)
    out = vmap_tasks(theta, *batched)
    for i, (scale, ref) in enumerate(zip(SCALES, refs)):
        _close(jax.tree_util.tree_map(lambda x, i=i: x[i], out), ref, rtol,
               f"{name} {jnp.dtype(dtype).name}: task {i} (scale {scale:g}) of the task-vmap vs alone")


@pytest.mark.parametrize("name", optimizer_names())
def test_modes_agree_float32(name):
    _check_all_modes(name, jnp.float32)


@pytest.mark.parametrize("name,kwargs", [("scheduled_adam", {"trust_features": True}),
                                         # the trust-gated nominal increment reads the trust path too
                                         ("scheduled_adam", {"trust_features": True, "step_controller": True,
                                                             "hypergradient_gain": 0.1,
                                                             "nominal_increment": "cosine_trust"}),
                                         ("hierarchical", {"output": "nominal_adam"}),
                                         # the controller's path includes the trust features' path
                                         ("hierarchical", {"output": "nominal_adam", "trust_features": True,
                                                           "step_controller": True, "hypergradient_gain": 0.1})])
def test_modes_agree_float32_variants(name, kwargs):
    _check_all_modes(name, jnp.float32, **kwargs)


@pytest.mark.slow  # ~6 min of compilation for all optimizers on a shared 2-core machine
@pytest.mark.parametrize("name", optimizer_names())
def test_modes_agree_float64(name):
    with jax.enable_x64(True):
        _check_all_modes(name, jnp.float64)


def test_check_has_power_on_the_old_variance_feature(monkeypatch):
    """The check fails for the pre-fix one-pass variance ``max(E[x²] - E[x]², 0)`` (issue 12),
    so it can catch the bug it was written for."""
    from learned_opt import hierarchical_lopt

    def one_pass(x, layout, mean=None, mean_square=None):
        return jnp.maximum(mean_square - jnp.square(mean), 0.0)

    monkeypatch.setattr(hierarchical_lopt, "segment_variance", one_pass)
    with pytest.raises(AssertionError, match="differs by"):
        _check_all_modes("hierarchical", jnp.float32)
