"""torch tensors in the dict API, without importing torch unless a tensor is seen.

:func:`is_tensor` looks torch up in ``sys.modules``: a program that never imported torch cannot
hold a ``torch.Tensor``, so ``learned_opt.minimize`` on NumPy/JAX inputs never imports it.

For an objective written in torch (``jac=None`` and an ``x0`` with torch leaves) the derivatives
come from ``torch.autograd`` on the packed float64 vector ``v`` of :mod:`learned_opt.pytree_vector`:
each leaf is ``v[o:o+n].reshape(shape).to(leaf dtype)`` (so float16/float32 leaves are computed in
their own dtype, as in the JAX path), ``∇f = ∂f/∂v`` by one backward pass, ``H·p`` by double
backward (``∂(∇f·p)/∂v`` with ``create_graph=True``) and the dense Hessian (dogleg, trust-exact)
by ``torch.autograd.functional.hessian``.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["is_tensor", "torch_module", "numpy_dtype", "torch_dtype", "to_host", "from_host",
           "value", "value_and_grad", "hvp", "hessian"]


def torch_module() -> Any:
    """The already-imported torch module, or None (never imports it)."""
    return sys.modules.get("torch")


def is_tensor(x: Any) -> bool:
    """True for a ``torch.Tensor`` (False without importing torch when torch was never imported)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def numpy_dtype(t: Any) -> np.dtype:
    """The NumPy dtype standing for a torch floating dtype (bfloat16 → ml_dtypes' bfloat16)."""
    import jax.numpy as jnp
    torch = torch_module()
    table = {torch.float16: np.dtype(np.float16), torch.float32: np.dtype(np.float32),
             torch.float64: np.dtype(np.float64), torch.bfloat16: np.dtype(jnp.bfloat16)}
    if t.dtype not in table:
        raise TypeError(f"dtype {t.dtype}")
    return table[t.dtype]


def torch_dtype(d: np.dtype) -> Any:
    """The torch dtype of a NumPy floating dtype (the inverse of :func:`numpy_dtype`)."""
    torch = torch_module()
    name = np.dtype(d).name
    table = {"float16": torch.float16, "float32": torch.float32, "float64": torch.float64,
             "bfloat16": torch.bfloat16}
    return table[name]


def to_host(x: Any) -> np.ndarray:
    """A torch tensor as a NumPy array (detached, on CPU; bfloat16 widened to float32)."""
    t = x.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    torch = torch_module()
    if t.dtype == torch.bfloat16:
        t = t.to(torch.float32)
    return t.numpy()


def from_host(arr: Any, d: np.dtype) -> Any:
    """A CPU tensor of NumPy dtype ``d`` (its own memory) holding ``arr``."""
    torch = torch_module()
    a = np.asarray(arr)
    if a.dtype not in (np.float16, np.float32, np.float64):
        a = a.astype(np.float64)
    return torch.tensor(a).to(torch_dtype(d))


def _leaves(spec, v):
    return [v[o:o + s].reshape(sh).to(torch_dtype(d))
            for sh, d, o, s in zip(spec.shapes, spec.dtypes, spec.offsets, spec.sizes)]


def _scalar(out: Any) -> Any:
    """Check that a torch objective returned a real scalar; return it as a 0-d tensor."""
    torch = torch_module()
    if isinstance(out, (tuple, list)):
        raise TypeError(f"fun returned a {type(out).__name__} of length {len(out)}; it must return a "
                        "scalar (did you mean jac=True, where fun returns (value, grad_dict)?)")
    if not isinstance(out, torch.Tensor):
        out = torch.as_tensor(out, dtype=torch.float64)
    if out.numel() != 1 or out.dim() > 1 or (out.dim() == 1 and out.shape[0] != 1):
        raise ValueError(f"fun must return a scalar; it returned a tensor of shape {tuple(out.shape)}")
    if out.is_complex() or not out.is_floating_point():
        if out.is_complex():
            raise TypeError(f"fun must return a real scalar; it returned dtype {out.dtype}")
        out = out.to(torch.float64)
    return out.reshape(())


def _flat(x: np.ndarray, requires_grad: bool) -> Any:
    torch = torch_module()
    v = torch.tensor(np.asarray(x, dtype=np.float64))
    return v.requires_grad_(requires_grad)


def value(fun: Callable, spec, x: np.ndarray, args: Sequence) -> float:
    """``f(x)`` of a torch objective, without building a graph."""
    torch = torch_module()
    with torch.no_grad():
        out = _scalar(fun(spec.build(_leaves(spec, _flat(x, False))), *args))
    return float(out.detach().to(torch.float64))


def value_and_grad(fun: Callable, spec, x: np.ndarray, args: Sequence) -> tuple[float, np.ndarray]:
    """``(f(x), ∇f(x))`` of a torch objective on the packed vector (one backward pass)."""
    torch = torch_module()
    v = _flat(x, True)
    with torch.enable_grad():
        out = _scalar(fun(spec.build(_leaves(spec, v)), *args))
        if out.requires_grad:
            (g,) = torch.autograd.grad(out, v, allow_unused=True)
        else:
            g = None
    g = np.zeros(spec.size) if g is None else g.detach().numpy().astype(np.float64, copy=False)
    return float(out.detach().to(torch.float64)), g


def hvp(fun: Callable, spec, x: np.ndarray, p: np.ndarray, args: Sequence) -> np.ndarray:
    """``∇²f(x)·p`` by double backward."""
    torch = torch_module()
    v = _flat(x, True)
    pt = torch.tensor(np.asarray(p, dtype=np.float64))
    with torch.enable_grad():
        out = _scalar(fun(spec.build(_leaves(spec, v)), *args))
        if not out.requires_grad:
            return np.zeros(spec.size)
        (g,) = torch.autograd.grad(out, v, create_graph=True, allow_unused=True)
        if g is None or not g.requires_grad:  # f is (at most) linear in x
            return np.zeros(spec.size)
        (hv,) = torch.autograd.grad(torch.dot(g, pt), v, allow_unused=True)
    return np.zeros(spec.size) if hv is None else hv.detach().numpy().astype(np.float64, copy=False)


def hessian(fun: Callable, spec, x: np.ndarray, args: Sequence) -> np.ndarray:
    """The dense ``∇²f(x)`` (n × n), for dogleg and trust-exact."""
    torch = torch_module()

    def f(v):
        return _scalar(fun(spec.build(_leaves(spec, v)), *args))

    with torch.enable_grad():
        H = torch.autograd.functional.hessian(f, _flat(x, False))
    return H.detach().numpy().astype(np.float64, copy=False).reshape(spec.size, spec.size)


def value_and_grad_tree(fun: Callable, spec, tree: Any, args: Sequence) -> tuple[float, Any]:
    """``(f, grad tree)`` at a tree shaped like x0 (the optax path's ``jac=True`` form)."""
    f, g = value_and_grad(fun, spec, spec.pack(tree, what="x"), args)
    return f, spec.unpack(g)
