"""The jitted objective kernels on the flat vector (static: fun, spec, argspec, complex flag)."""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from learned_opt.minimize.args import _ArgSpec
from learned_opt.pytree_vector import PackSpec


def _scalar_out(out: Any) -> jax.Array:
    """Check at trace time that ``fun`` returned a real scalar."""
    if isinstance(out, (tuple, list)):
        raise TypeError(f"fun returned a {type(out).__name__} of length {len(out)}; it must return a "
                        "scalar (did you mean jac=True, where fun returns (value, grad_dict)?)")
    out = jnp.asarray(out)
    if out.shape != ():
        raise ValueError(f"fun must return a scalar; it returned an array of shape {out.shape}")
    if jnp.issubdtype(out.dtype, jnp.complexfloating):
        raise TypeError(f"fun must return a real scalar; it returned dtype {out.dtype}")
    if not jnp.issubdtype(out.dtype, jnp.floating):
        out = out.astype(jnp.result_type(float))
    return out


def _apply_fun(fun, spec: PackSpec, argspec: _ArgSpec, vec, dyn, lb, ub, cplx: bool = False):
    if lb is not None:  # evaluate inside the box; the gradient is ∇f at the projected point
        vec = vec + jax.lax.stop_gradient(jnp.clip(vec, lb, ub) - vec)
    if cplx:
        leaves = [jax.lax.slice(vec, (o,), (o + s,)).reshape(sh).astype(jnp.result_type(d, jnp.complex64))
                  for sh, d, o, s in zip(spec.shapes, spec.dtypes, spec.offsets, spec.sizes)]
        out = jnp.asarray(fun(spec.build(leaves), *argspec.merge(dyn)))
        if out.shape != ():
            raise ValueError(f"fun must return a scalar; it returned an array of shape {out.shape}")
        return out
    return _scalar_out(fun(spec.unpack_jax(vec), *argspec.merge(dyn)))


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 7))
def _jit_value(fun, spec, argspec, vec, dyn, lb, ub, cplx):
    return _apply_fun(fun, spec, argspec, vec, dyn, lb, ub, cplx)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _jit_value_and_grad(fun, spec, argspec, vec, dyn, lb, ub):
    """``([f, all-finite flag], ∇f)``: the finiteness check fuses with the gradient computation."""
    v, g = jax.value_and_grad(lambda u: _apply_fun(fun, spec, argspec, u, dyn, lb, ub))(vec)
    ok = jnp.isfinite(v) & jnp.all(jnp.isfinite(g))
    return jnp.stack([v.astype(g.dtype), ok.astype(g.dtype)]), g


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _jit_hvp(fun, spec, argspec, vec, p, dyn, lb, ub):
    grad = jax.grad(lambda u: _apply_fun(fun, spec, argspec, u, dyn, lb, ub))
    return jax.jvp(grad, (vec,), (p.astype(vec.dtype),))[1]


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _jit_hess(fun, spec, argspec, vec, dyn, lb, ub):
    return jax.hessian(lambda u: _apply_fun(fun, spec, argspec, u, dyn, lb, ub))(vec)

