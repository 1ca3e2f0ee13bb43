"""Contract tests shared by every learned optimizer (parameterized over the registry)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import learned_opt
from learned_opt.registry import get_optimizer, optimizer_names

NAMES = optimizer_names()
SMALL = {  # small-but-real configurations keep compile times of the contract tests low
    "mlp": {"hidden_sizes": (8, 8)},
    "hierarchical": {"rnn_size": 4, "hidden_sizes": (8,)},
}


def make(name):
    return get_optimizer(name, **SMALL.get(name, {}))


def sample_params():
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    return {
        "dense": {"w": jax.random.normal(k[0], (4, 3)), "b": jnp.zeros((3,))},
        "scalar": jnp.asarray(0.7, jnp.float32),
        "empty": jnp.zeros((0, 5), jnp.float32),
        "half": jax.random.normal(k[1], (2, 3, 2)).astype(jnp.bfloat16),
    }


def loss_fn(p):
    w = p["dense"]["w"]
    x = jnp.arange(4.0) / 4.0
    h = jnp.tanh(x @ w + p["dense"]["b"])
    return (jnp.sum((h - 0.3) ** 2) + (p["scalar"] - 2.0) ** 2 + jnp.sum(p["empty"])
            + jnp.sum(jnp.sin(p["half"].astype(jnp.float32))))


def perturbed_thetas(lopt, n):
    """n distinct θ's: for the learned architectures different init keys, for the hand-designed
    ones (and scheduled_adam, whose initial θ is Adam whatever the key) the init θ shifted by ±0.3."""
    base = lopt.init(jax.random.PRNGKey(1))
    if lopt.name in ("sgd", "momentum", "adam", "scheduled_adam"):
        return [jax.tree_util.tree_map(lambda x, i=i: x + 0.3 * (i - 1), base) for i in range(n)]
    return [lopt.init(jax.random.PRNGKey(10 + i)) for i in range(n)]


def run(lopt, theta, params, steps=3, jit=False):
    tx = lopt.opt_fn(theta, num_steps=10)
    state = tx.init(params)
    update = jax.jit(tx.update) if jit else tx.update
    history = []
    for _ in range(steps):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = update(grads, state, params, loss=loss)
        params = optax.apply_updates(params, updates)
        history.append((updates, state))
    return params, history


def leaves_close(a, b, rtol=1e-5, atol=1e-7):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), rtol=rtol, atol=atol)


def test_registry_names():
    assert set(NAMES) == {"mlp", "factored_mlp", "hierarchical", "scheduled_adam", "sgd", "momentum", "adam"}
    with pytest.raises(ValueError, match="unknown learned optimizer"):
        get_optimizer("nope")


@pytest.mark.parametrize("cls", ["MLPLOpt", "FactoredMLPLOpt", "HierarchicalLOpt", "ScheduledAdamLOpt", "LearnableSGD",
                                 "LearnableMomentum", "LearnableAdam"])
def test_public_classes_construct_without_arguments(cls):
    lopt = getattr(learned_opt, cls)()
    theta = lopt.init(jax.random.PRNGKey(0))
    assert learned_opt.num_meta_params(theta) > 0
    # config() rebuilds an equal architecture
    assert type(lopt)(**lopt.config()).config() == lopt.config()


@pytest.mark.parametrize("name", NAMES)
def test_structure_shape_dtype_preserved(name):
    lopt = make(name)
    params = sample_params()
    theta = lopt.init(jax.random.PRNGKey(0))
    tx = lopt.opt_fn(theta)
    assert isinstance(tx, optax.GradientTransformationExtraArgs)
    state0 = tx.init(params)
    assert isinstance(state0, tuple) and hasattr(state0, "_fields") and state0.count.dtype == jnp.int32
    new_params, history = run(lopt, theta, params, steps=3, jit=True)
    spec = lambda t: jax.tree_util.tree_map(lambda x: (jnp.shape(x), jnp.asarray(x).dtype), t)
    for i, (updates, state) in enumerate(history):
        assert spec(updates) == spec(params)  # same tree, shapes, and each param's dtype (bf16 too)
        assert spec(state) == spec(state0)
        assert int(state.count) == i + 1
    assert spec(new_params) == spec(params)
    for leaf in jax.tree_util.tree_leaves(new_params):
        assert bool(jnp.all(jnp.isfinite(leaf.astype(jnp.float32))))
    # the optimizer actually moved the (non-empty) parameters
    assert not np.allclose(np.asarray(new_params["dense"]["w"]), np.asarray(params["dense"]["w"]))
    assert float(new_params["scalar"]) != float(params["scalar"])


@pytest.mark.parametrize("name", NAMES)
def test_jit_equals_eager(name):
    lopt = make(name)
    theta = lopt.init(jax.random.PRNGKey(0))
    p_eager, h_eager = run(lopt, theta, sample_params(), steps=2, jit=False)
    p_jit, h_jit = run(lopt, theta, sample_params(), steps=2, jit=True)
    leaves_close(h_eager[-1][0], h_jit[-1][0], rtol=1e-4, atol=1e-8)
    leaves_close(p_eager, p_jit, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_vmap_over_theta_equals_loop(name):
    lopt = make(name)
    thetas = perturbed_thetas(lopt, 3)
    params = sample_params()
    params32 = jax.tree_util.tree_map(lambda x: x.astype(jnp.float32), params)  # vmap path in f32
    grads = jax.grad(loss_fn)(params32)

    def two_updates(theta):
        tx = lopt.opt_fn(theta, num_steps=10)
        s = tx.init(params32)
        u, s = tx.update(grads, s, params32, loss=jnp.float32(1.5))
        u, s = tx.update(grads, s, optax.apply_updates(params32, u), loss=jnp.float32(1.2))
        return u

    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *thetas)
    batched = jax.jit(jax.vmap(two_updates))(stacked)
    single_fn = jax.jit(two_updates)
    for i, theta in enumerate(thetas):
        single = single_fn(theta)
        leaves_close(jax.tree_util.tree_map(lambda x, i=i: x[i], batched), single, rtol=1e-4, atol=1e-9)
    # different θ really give different updates (the comparison above is not vacuous)
    w = np.asarray(batched["dense"]["w"])
    assert not np.allclose(w[0], w[1])


@pytest.mark.parametrize("name", NAMES)
def test_theta_gradient_through_unroll_is_finite(name):
    """Backprop through 4 unrolled steps, on a problem with an unused (zero-gradient) tensor."""
    lopt = make(name)
    theta = lopt.init(jax.random.PRNGKey(0))
    params = {"w": jnp.full((3, 2), 0.5), "b": jnp.zeros((2,)), "unused": jnp.ones((4,)),
              "zero": jnp.zeros((2, 2))}

    def f(p):
        return jnp.sum((jnp.ones(3) @ p["w"] + p["b"] - 1.0) ** 2) + jnp.sum(p["zero"] * 0.0)

    def meta_loss(th):
        tx = lopt.opt_fn(th, num_steps=4)

        def step(carry, _):
            p, s = carry
            loss, g = jax.value_and_grad(f)(p)
            u, s = tx.update(g, s, p, loss=loss)
            p = optax.apply_updates(p, u)
            return (p, s), f(p)

        _, losses = jax.lax.scan(step, (params, tx.init(params)), None, length=4)
        return jnp.sum(losses)

    grads = jax.jit(jax.grad(meta_loss))(theta)
    flat = np.concatenate([np.ravel(np.asarray(x)) for x in jax.tree_util.tree_leaves(grads)])
    assert np.all(np.isfinite(flat))
    assert np.any(flat != 0.0)


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_raise_clear_errors(name):
    lopt = make(name)
    theta = lopt.init(jax.random.PRNGKey(0))
    key = sorted(theta)[0]
    broken = {k: v for k, v in theta.items() if k != key}
    with pytest.raises(ValueError, match=key):
        lopt.opt_fn(broken)
    with pytest.raises(ValueError, match="num_steps"):
        lopt.opt_fn(theta, num_steps=0)
    if name in ("mlp", "factored_mlp", "hierarchical"):
        tx = lopt.opt_fn(theta)
        params = {"a": jnp.ones((2, 2))}
        state = tx.init(params)
        with pytest.raises(ValueError, match="needs params"):
            tx.update({"a": jnp.ones((2, 2))}, state, None)
        with pytest.raises(ValueError, match="shape"):
            tx.update({"a": jnp.ones((3, 2))}, state, params)


@pytest.mark.parametrize("name", ["mlp", "factored_mlp", "hierarchical"])
def test_row_chunking_does_not_change_updates(name):
    """The per-parameter network runs in row chunks; a chunk of 5 rows (many chunks, a padded
    last one, chunks straddling tensors) gives the same updates as one chunk."""
    cfg = SMALL.get(name, {})
    one, many = get_optimizer(name, **cfg), get_optimizer(name, row_chunk=5, **cfg)
    theta = one.init(jax.random.PRNGKey(4))
    params = sample_params()
    grads = jax.grad(loss_fn)(params)

    def first_update(lopt):
        tx = lopt.opt_fn(theta, num_steps=10)
        return jax.jit(tx.update)(grads, tx.init(params), params, loss=jnp.float32(2.0))[0]

    leaves_close(first_update(one), first_update(many), rtol=1e-5, atol=1e-9)
