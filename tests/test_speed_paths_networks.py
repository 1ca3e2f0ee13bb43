"""The speed paths of the per-parameter network: column-by-column derivatives of a narrow last
layer (networks.narrow_matmul) and the split-based per-tensor means of the feature scales."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from learned_opt.feature_math import _segment_mean_split, segment_rms_scales
from learned_opt.flat_layout import layout_of, segment_mean
from learned_opt.networks import mlp_apply, mlp_init, narrow_matmul


def _hw(k=2, rows=40, hidden=8):
    h = jax.random.normal(jax.random.PRNGKey(0), (rows, hidden))
    w = jax.random.normal(jax.random.PRNGKey(1), (hidden, k))
    return h, w


@pytest.mark.parametrize("k", [1, 2])
def test_narrow_matmul_is_a_matmul_in_value_and_every_derivative(k):
    h, w = _hw(k)
    np.testing.assert_array_equal(narrow_matmul(h, w), h @ w)

    def f(h, w):
        return jnp.sum(jnp.sin(narrow_matmul(h, w)))

    def g(h, w):
        return jnp.sum(jnp.sin(h @ w))

    for argnums in (0, 1, (0, 1)):  # a zero tangent for the other argument is skipped
        for a, b in zip(jax.tree_util.tree_leaves(jax.grad(f, argnums)(h, w)),
                        jax.tree_util.tree_leaves(jax.grad(g, argnums)(h, w))):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jax.jacfwd(f, 1)(h, w), jax.jacfwd(g, 1)(h, w), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jax.hessian(f, 1)(h, w), jax.hessian(g, 1)(h, w), rtol=1e-4, atol=1e-5)
    hs, ws = jnp.stack([h, 2 * h]), jnp.stack([w, -w])
    np.testing.assert_allclose(jax.vmap(jax.grad(f, 1))(hs, ws), jax.vmap(jax.grad(g, 1))(hs, ws),
                               rtol=1e-5, atol=1e-6)


def test_mlp_apply_routes_only_a_narrow_last_layer_through_narrow_matmul():
    x = jax.random.normal(jax.random.PRNGKey(2), (30, 5))
    for sizes, expected in [((5, 16, 2), 1), ((5, 16, 1), 1), ((5, 16, 3), 0), ((5, 2), 1), ((5, 2, 16), 0)]:
        theta = mlp_init(jax.random.PRNGKey(3), sizes)
        layers = len(sizes) - 1
        jaxpr = str(jax.make_jaxpr(lambda t, n=layers: mlp_apply(t, x, n))(theta))
        assert jaxpr.count("name=narrow_matmul") == expected, sizes
        out = mlp_apply(theta, x, len(sizes) - 1)
        h = x
        for i in range(len(sizes) - 1):
            h = h @ theta[f"w{i}"] + theta[f"b{i}"]
            h = jax.nn.relu(h) if i < len(sizes) - 2 else h
        np.testing.assert_allclose(out, h, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("tree,chunk", [
    ({"a": jnp.ones((3, 4)), "b": jnp.ones(5), "c": jnp.zeros((0,)), "d": jnp.ones(())}, 8),  # padding rows
    ({"a": jnp.ones(3)}, None),
    ({"x": jnp.ones((2, 2)), "y": jnp.ones(7)}, None),
    ({}, None),
])
def test_split_segment_mean_equals_segment_mean_with_its_gradient(tree, chunk):
    layout = layout_of(tree, chunk)
    x = jax.random.normal(jax.random.PRNGKey(4), (layout.padded, 3))
    np.testing.assert_array_equal(_segment_mean_split(x, layout), segment_mean(x, layout))
    if layout.num_tensors:
        ga = jax.grad(lambda x: jnp.sum(jnp.sin(_segment_mean_split(x, layout))))(x)
        gb = jax.grad(lambda x: jnp.sum(jnp.sin(segment_mean(x, layout))))(x)
        np.testing.assert_array_equal(ga, gb)
        scales = segment_rms_scales(x, layout)
        np.testing.assert_array_equal(scales, jax.lax.rsqrt(jnp.maximum(segment_mean(x * x, layout), 1e-24)))
