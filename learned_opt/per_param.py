"""The per-parameter optimizer core shared by the MLP, factored, hierarchical and scheduled-Adam
learned optimizers.

:class:`PerParameterLOpt` owns everything that does not depend on the architecture:

* θ validation (every key and shape that ``init`` produces, see :meth:`PerParameterLOpt.check_theta`)
  and the ``num_steps`` check;
* the optax glue: ``init(params)`` builds the flat layout of ``params``
  (:func:`learned_opt.flat_layout.layout_of`) and asks the architecture for its state;
  ``update(grads, state, params, **extra)`` checks that ``grads`` has the params' structure,
  flattens gradients and parameters into one vector each, reads the scalar extra arguments the
  architecture declares (``extra_args``, e.g. ``loss``), calls the architecture's
  :meth:`~PerParameterLOpt.step` and splits the flat update back into the params' tree (each leaf
  cast to its own dtype);
* the row-chunked per-parameter network (:meth:`PerParameterLOpt.row_network`): each feature
  column divided by its root-mean-square over the parameter's tensor, then the MLP over every row.

An architecture supplies only its meta-parameters (``init``), its state (``init_state``) and one
``step(theta, inputs, state) -> (u, new_state)``: its accumulators, features and output rule on
the flat vectors of :class:`StepInputs`. The state is a NamedTuple whose ``count`` is the int32
number of updates done (advanced with :func:`learned_opt.feature_math.next_count`).
"""
from __future__ import annotations

import abc
from typing import Any, Callable, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import optax

from learned_opt.base import LearnedOptimizer, Theta
from learned_opt.feature_math import segment_rms_scales
from learned_opt.flat_layout import FlatLayout, check_same_structure, flatten, layout_of, unflatten
from learned_opt.networks import Activation, per_row_mlp
from learned_opt.validation import check_num_steps, check_theta_shapes, take_loss

Array = jax.Array


class StepInputs(NamedTuple):
    """What the core hands :meth:`PerParameterLOpt.step` for one update."""

    layout: FlatLayout  # static layout of params (computation dtype, segments, padding)
    g: Array  # (P,) flat gradient (zeros in the padding rows)
    p: Array  # (P,) flat parameters
    num_steps: int | Array | None  # the horizon T (checked), if known
    extra: dict[str, Array | None]  # the declared scalar extra arguments (None when not passed)


class PerParameterLOpt(LearnedOptimizer):
    """Core of the learned optimizers that compute on one flat vector of all parameters.

    Subclasses are frozen dataclasses with a ``row_chunk`` field (rows per chunk of the
    per-parameter network, a speed knob) and implement ``init``, :meth:`init_state` and :meth:`step`.
    """

    row_chunk: int  # declared as a field by each architecture (in its own argument position)
    #: scalar extra arguments of ``update`` the architecture reads (handed over as ``inputs.extra``)
    extra_args: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def init_state(self, layout: FlatLayout) -> Any:
        """The optimizer state (a NamedTuple with an int32 ``count``) for params of ``layout``."""

    @abc.abstractmethod
    def step(self, theta: Theta, inputs: StepInputs, state: Any) -> tuple[Array, Any]:
        """``(u, new_state)``: the flat update ``u`` (P,) and the state after this update."""

    # ------------------------------------------------------------------------------ core
    def check_theta(self, theta: Theta) -> None:
        """ValueError naming the keys of ``init``'s θ that ``theta`` lacks, or those whose
        (trailing) shape differs."""
        expected = jax.eval_shape(self.init, jax.ShapeDtypeStruct((2,), jnp.uint32))
        check_theta_shapes(theta, {k: v.shape for k, v in expected.items()}, type(self).__name__)

    def layout(self, params: Any) -> FlatLayout:
        """The flat layout of ``params``, padded to whole row chunks."""
        return layout_of(params, self.row_chunk)

    def opt_fn(self, theta: Theta, num_steps: int | Array | None = None) -> optax.GradientTransformationExtraArgs:
        """The optax optimizer with meta-parameters ``theta``; ``update`` needs ``params``."""
        owner = type(self).__name__
        self.check_theta(theta)
        num_steps = check_num_steps(num_steps, owner)

        def init_fn(params: Any) -> Any:
            return self.init_state(self.layout(params))

        def update_fn(updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
            grads = updates  # the incoming updates are the gradients
            if params is None:
                raise ValueError(f"{owner}.update needs params (parameters are input features)")
            layout = self.layout(params)
            check_same_structure(layout, grads, "grads")
            losses = {name: take_loss(extra, name, layout.dtype) for name in self.extra_args}
            inputs = StepInputs(layout, flatten(grads, layout), flatten(params, layout), num_steps, losses)
            u, new_state = self.step(theta, inputs, state)
            return unflatten(u, layout), new_state

        return optax.GradientTransformationExtraArgs(init_fn, update_fn)

    def row_network(self, theta: dict, rows: tuple[Array, ...], layout: FlatLayout, num_layers: int,
                    feats_fn: Callable[..., Array], *, shared_inputs: Array | None = None,
                    tensor_inputs: Array | None = None, tensor_bias: Array | None = None,
                    activation: Activation = jax.nn.relu) -> Array:
        """The per-parameter network ``(P, out)`` on the row features ``x = feats_fn(*rows)`` (F
        columns), each column scaled by ``1/sqrt(max(mean_tensor(x²), 1e-24))`` of its row's tensor.

        Inputs that are the same for every row of a tensor enter through the first layer as a
        bias instead of as columns: ``shared_inputs`` (S,) (e.g. time features) and
        ``tensor_inputs`` (T, S) (per-tensor context) are multiplied by ``theta["w0"][F:]``;
        ``tensor_bias`` (T, hidden0) is added as it is. Runs in chunks of ``row_chunk`` rows
        (:func:`learned_opt.networks.per_row_mlp`).
        """
        x = feats_fn(*rows)
        extra_w = theta["w0"][x.shape[-1]:]
        bias = None if shared_inputs is None else shared_inputs @ extra_w
        if tensor_inputs is not None:
            projected = tensor_inputs @ extra_w
            tensor_bias = projected if tensor_bias is None else tensor_bias + projected
        return per_row_mlp(theta, rows, layout, num_layers, feats_fn=feats_fn,
                           col_scale=segment_rms_scales(x, layout), bias=bias, tensor_bias=tensor_bias,
                           activation=activation, chunk=self.row_chunk)
