"""The per-parameter optimizer core and the frozen-dataclass contract of every learned optimizer."""
from __future__ import annotations

import dataclasses
import json
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import learned_opt
from learned_opt import feature_math, features, flat_layout, networks
from learned_opt.base import LearnedOptimizer
from learned_opt.per_param import PerParameterLOpt, StepInputs
from learned_opt.registry import get_optimizer, optimizer_names

VARIANTS = [(name, {}) for name in optimizer_names()] + [
    ("scheduled_adam", {"trust_features": True, "max_correction": 0.5}),
    ("scheduled_adam", {"trust_features": True, "step_controller": True, "max_step_change": 0.5}),
    ("scheduled_adam", {"trust_features": True, "step_controller": True, "hypergradient_gain": 0.1}),
    ("hierarchical", {"output": "nominal_adam", "rnn_size": 4}),
    ("hierarchical", {"output": "nominal_adam", "trust_features": True}),
    ("hierarchical", {"output": "nominal_adam", "trust_features": True, "step_controller": True,
                      "hypergradient_gain": 0.1}),
    ("mlp", {"hidden_sizes": [8], "row_chunk": 5}),
]


@pytest.mark.parametrize("name,kwargs", VARIANTS)
def test_config_round_trips_and_optimizers_are_frozen_values(name, kwargs):
    lopt = get_optimizer(name, **kwargs)
    config = lopt.config()
    assert list(config) == [f.name for f in dataclasses.fields(lopt)]
    rebuilt = get_optimizer(name, **json.loads(json.dumps(config)))  # lists, as a checkpoint stores them
    assert rebuilt == lopt and hash(rebuilt) == hash(lopt) and rebuilt.config() == config
    with pytest.raises(dataclasses.FrozenInstanceError):
        lopt.name = "other"  # type: ignore[misc]
    field = dataclasses.fields(lopt)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(lopt, field, getattr(lopt, field))


@pytest.mark.parametrize("name,kwargs", VARIANTS[-4:])
def test_checkpoint_round_trip_of_variants(tmp_path, name, kwargs):
    lopt = get_optimizer(name, **kwargs)
    theta = lopt.init(jax.random.PRNGKey(3))
    loaded, theta2 = learned_opt.load(learned_opt.save(tmp_path / "v.lopt", lopt, theta))
    assert loaded == lopt
    params = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.ones(4)}
    grads = jax.tree_util.tree_map(lambda x: 0.1 * x + 0.01, params)
    outs = []
    for opt, th in ((lopt, theta), (loaded, theta2)):
        tx = opt.opt_fn(th, num_steps=7)
        outs.append(tx.update(grads, tx.init(params), params, loss=jnp.asarray(1.5))[0])
    for a, b in zip(jax.tree_util.tree_leaves(outs[0]), jax.tree_util.tree_leaves(outs[1])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_abstract_methods_are_enforced():
    with pytest.raises(TypeError, match="abstract"):
        LearnedOptimizer()  # type: ignore[abstract]

    @dataclasses.dataclass(frozen=True)
    class NoStep(PerParameterLOpt):
        row_chunk: int = 8

        def init(self, key):
            return {}

        def init_state(self, layout):
            return ()

    with pytest.raises(TypeError, match="step"):
        NoStep()  # type: ignore[abstract]


class _CountState(NamedTuple):
    count: jax.Array
    last_loss: jax.Array


@dataclasses.dataclass(frozen=True)
class _ScaledGradient(PerParameterLOpt):
    """A minimal architecture on the core: ``u = -net(g / rms_tensor(g))`` with a linear net."""

    row_chunk: int = 4
    extra_args = ("loss",)

    def init(self, key):
        return {"w0": jnp.full((1, 1), 0.5), "b0": jnp.zeros((1,))}

    def init_state(self, layout):
        return _CountState(jnp.zeros([], jnp.int32), jnp.zeros([], layout.dtype))

    def step(self, theta, inputs: StepInputs, state):
        out = self.row_network(theta, (inputs.g,), inputs.layout, 1, lambda g: g[:, None])
        loss = inputs.extra["loss"]
        last = state.last_loss if loss is None else loss
        return -out[:, 0], _CountState(feature_math.next_count(state.count), last)


def test_core_flattens_normalizes_and_unflattens():
    """Nested tree, a bfloat16 leaf, an empty leaf and 11 rows in chunks of 4 (padded to 12): the
    update of each leaf is -0.5 g / rms(g) over its tensor, in the leaf's dtype."""
    lopt = _ScaledGradient()
    params = {"a": {"w": jnp.ones((2, 3))}, "h": jnp.ones((5,), jnp.bfloat16), "e": jnp.zeros((0, 2))}
    grads = {"a": {"w": jnp.arange(6.0).reshape(2, 3) - 2.0}, "h": jnp.full((5,), 3.0, jnp.bfloat16),
             "e": jnp.zeros((0, 2))}
    tx = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))
    state = tx.init(params)
    for update in (tx.update, jax.jit(tx.update)):
        u, new_state = update(grads, state, params, loss=jnp.asarray(2.0))
        g = np.asarray(grads["a"]["w"])
        np.testing.assert_allclose(np.asarray(u["a"]["w"]), -0.5 * g / np.sqrt(np.mean(g ** 2)), rtol=1e-6)
        assert u["h"].dtype == jnp.bfloat16 and np.allclose(np.asarray(u["h"], np.float32), -0.5)
        assert u["e"].shape == (0, 2)
        assert int(new_state.count) == 1 and float(new_state.last_loss) == 2.0
    with pytest.raises(ValueError, match="needs params"):
        tx.update(grads, state, None)
    with pytest.raises(ValueError, match="shape"):
        tx.update({**grads, "h": jnp.ones((4,), jnp.bfloat16)}, state, params)
    with pytest.raises(ValueError, match="w0"):
        lopt.opt_fn({"w0": jnp.ones((2, 1)), "b0": jnp.zeros((1,))})
    with pytest.raises(ValueError, match="b0"):
        lopt.opt_fn({"w0": jnp.ones((1, 1))})


def test_next_count_saturates():
    top = jnp.asarray(np.iinfo(np.int32).max, jnp.int32)
    assert int(feature_math.next_count(top)) == np.iinfo(np.int32).max
    assert int(feature_math.next_count(jnp.asarray(4, jnp.int32))) == 5


def test_features_module_re_exports_the_split_modules():
    assert features.layout_of is flat_layout.layout_of
    assert features.per_row_mlp is networks.per_row_mlp
    assert features.loss_features is feature_math.loss_features
    for name in features.__all__:
        assert hasattr(features, name), name
