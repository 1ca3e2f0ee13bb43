"""FactoredMLPLOpt: factored second moments against NumPy, learned decays, meta-gradients."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from learned_opt import features as F
from learned_opt import num_meta_params
from learned_opt.factored_lopt import FactoredMLPLOpt, factored_second_moments


def test_factored_second_moments_match_numpy():
    shapes = {"m": (2, 5, 3), "v": (4,), "s": (), "w": (3, 6), "e": (0, 3)}
    rng = np.random.default_rng(0)
    params = {k: jnp.zeros(s) for k, s in shapes.items()}
    layout = F.layout_of(params)
    betas = np.array([0.5, 0.9])
    m_len = 2 * (5 + 3) + 4 + 1 + (3 + 6) + 0
    acc = jnp.zeros((m_len, 2))
    ref = {k: None for k in shapes}
    for _ in range(3):
        grads = {k: rng.normal(size=s) for k, s in shapes.items()}
        acc, vhat = factored_second_moments(F.flatten(grads, layout), acc, jnp.asarray(betas, jnp.float32), layout)
        assert acc.shape == (m_len, 2)  # R + C numbers per matrix, not R·C
        vhat = np.asarray(vhat)
        names = jax.tree_util.tree_flatten(params)[1]
        keys = sorted(shapes)  # dict leaves are flattened in sorted key order
        for k, off, n in zip(keys, layout.offsets, layout.sizes):
            q = np.asarray(grads[k], np.float64) ** 2 + 1e-30
            if len(shapes[k]) >= 2 and n > 0:
                r_new = q.mean(-1)[..., None] * (1 - betas)
                c_new = q.mean(-2)[..., None] * (1 - betas)
                if ref[k] is None:
                    ref[k] = (np.zeros_like(r_new), np.zeros_like(c_new))
                r = betas * ref[k][0] + r_new
                c = betas * ref[k][1] + c_new
                ref[k] = (r, c)
                expect = r[..., :, None, :] * c[..., None, :, :] / r.mean(-2, keepdims=True)[..., None, :]
            else:
                full = q.reshape(-1)[:, None] * (1 - betas)
                ref[k] = full if ref[k] is None else betas * ref[k] + full
                expect = ref[k]
            np.testing.assert_allclose(vhat[off:off + n], expect.reshape(n, 2), rtol=1e-5)
        del names


def test_meta_parameter_count():
    lopt = FactoredMLPLOpt()
    theta = lopt.init(jax.random.PRNGKey(0))
    f = lopt.num_features  # 14 per-parameter + 7 time features
    assert f == 21
    assert num_meta_params(theta) == (f + 1) * 8 + 9 * 4 + 5 * 2 + 3 + 3 == 228
    np.testing.assert_allclose(np.asarray(jax.nn.sigmoid(theta["momentum_decay_logits"])), [0.5, 0.9, 0.99],
                               rtol=1e-6)


@pytest.mark.slow
def test_decay_meta_gradients_match_finite_differences():
    """The accumulator decays are meta-parameters: their unrolled θ-gradient matches central
    differences (float64; the tanh network is smooth). A large step_mult makes the effect of the
    decays on the meta-loss well above finite-difference noise."""
    lopt = FactoredMLPLOpt(step_mult=0.1)
    with jax.enable_x64(True):
        theta = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), lopt.init(jax.random.PRNGKey(3)))
        a = jnp.asarray(np.random.default_rng(1).normal(size=(4, 3)))
        params = {"w": jnp.asarray(np.random.default_rng(2).normal(size=(4, 3))), "b": jnp.ones((3,))}

        def f(p):
            return jnp.sum((p["w"] - a) ** 2) + jnp.sum(p["b"] ** 2)

        def meta(th):
            tx = lopt.opt_fn(th, num_steps=6)

            def step(carry, _):
                p, s = carry
                u, s = tx.update(jax.grad(f)(p), s, p)
                return (optax.apply_updates(p, u), s), None

            (p, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=6)
            return f(p)

        meta_j = jax.jit(meta)
        grads = jax.jit(jax.grad(meta))(theta)
        for key in ("momentum_decay_logits", "second_moment_decay_logits"):
            for i in range(3):
                e = jnp.zeros(3, jnp.float64).at[i].set(1e-4)
                fd = (float(meta_j(dict(theta, **{key: theta[key] + e})))
                      - float(meta_j(dict(theta, **{key: theta[key] - e})))) / 2e-4
                assert float(grads[key][i]) == pytest.approx(fd, rel=1e-4, abs=1e-9), (key, i)
        assert np.any(np.asarray(grads["second_moment_decay_logits"]) != 0)


def test_invalid_config():
    with pytest.raises(ValueError, match="equal"):
        FactoredMLPLOpt(momentum_decays=(0.9,), second_moment_decays=(0.9, 0.99))
    with pytest.raises(ValueError, match="second_moment_decays"):
        FactoredMLPLOpt(second_moment_decays=(0.9, 0.99, 1.5))
