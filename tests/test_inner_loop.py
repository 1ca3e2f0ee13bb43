"""learned_opt.inner_loop: the shared optax scan and the traced hand-designed baseline family."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from learned_opt.inner_loop import LEARNING_RATE_GRID, hand_designed, optax_scan, record_steps


def _grads(seed, n=12):
    rng = np.random.default_rng(seed)
    return [{"a": jnp.asarray(rng.standard_normal(3) * 10 ** rng.uniform(-3, 2), jnp.float32),
             "b": jnp.asarray(rng.standard_normal((2, 2)), jnp.float32)} for _ in range(n)]


def _apply(opt, grads):
    params = {"a": jnp.ones(3), "b": jnp.zeros((2, 2))}
    state = opt.init(params)
    out = []
    for g in grads:
        upd, state = opt.update(g, state, params)
        out.append(upd)
    return out


@pytest.mark.parametrize("adam,cosine,reference", [
    (1, 0, lambda lr, T: optax.adam(lr)),
    (0, 0, lambda lr, T: optax.sgd(lr, momentum=0.9)),
    (1, 1, lambda lr, T: optax.adam(optax.cosine_decay_schedule(lr, T))),
    (0, 1, lambda lr, T: optax.sgd(optax.cosine_decay_schedule(lr, T), momentum=0.9)),
])
def test_hand_designed_equals_optax(adam, cosine, reference):
    lr, T = 0.03, 8  # 12 steps > T: the cosine schedule stays at 0 after T
    grads = _grads(0)
    ours = _apply(hand_designed(jnp.float32(lr), adam, cosine, T), grads)
    ref = _apply(reference(lr, T), grads)
    for u, r in zip(ours, ref):
        for k in u:
            np.testing.assert_allclose(np.asarray(u[k]), np.asarray(r[k]), rtol=2e-5, atol=1e-9)


def test_hand_designed_vmaps_over_its_choices():
    grads = _grads(1, 5)
    hp = {"lr": jnp.asarray([0.1, 0.01]), "adam": jnp.asarray([1.0, 0.0]), "cos": jnp.asarray([0.0, 1.0])}

    def run(lr, a, c):
        return _apply(hand_designed(lr, a, c, 5), grads)[-1]

    both = jax.vmap(run)(hp["lr"], hp["adam"], hp["cos"])
    one = _apply(optax.adam(0.1), grads)[-1]
    two = _apply(optax.sgd(optax.cosine_decay_schedule(0.01, 5), momentum=0.9), grads)[-1]
    np.testing.assert_allclose(both["a"][0], one["a"], rtol=2e-5)
    np.testing.assert_allclose(both["a"][1], two["a"], rtol=2e-5, atol=1e-9)


def test_optax_scan_matches_python_loop_and_records():
    target = jnp.asarray([1.0, -2.0, 3.0])

    def loss_fn(p, x):
        return jnp.sum((p["w"] - target) ** 2 * x)

    xs = jnp.asarray(np.random.default_rng(0).uniform(0.5, 1.5, (7,)), jnp.float32)
    p0 = {"w": jnp.zeros(3)}
    run = optax_scan(optax.adam(0.1), loss_fn, p0, xs, num_steps=7, record_every=3,
                     record=lambda p: jnp.sum(p["w"]))
    opt, p, s = optax.adam(0.1), p0, optax.adam(0.1).init(p0)
    sums, losses = [float(jnp.sum(p["w"]))], []
    for t in range(7):
        l, g = jax.value_and_grad(loss_fn)(p, xs[t])
        losses.append(float(l))
        u, s = opt.update(g, s, p)
        p = optax.apply_updates(p, u)
        if (t + 1) % 3 == 0 or t == 6:
            sums.append(float(jnp.sum(p["w"])))
    np.testing.assert_array_equal(record_steps(7, 3), [0, 3, 6, 7])
    np.testing.assert_allclose(np.asarray(run.records), sums, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(run.batch_loss), losses, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(run.params["w"]), np.asarray(p["w"]), rtol=1e-6)


def test_grid_spans_ten_half_decades():
    g = np.log10(LEARNING_RATE_GRID)
    assert len(g) == 10 and g[0] == pytest.approx(-4) and np.allclose(np.diff(g), 0.5, atol=1e-5)
