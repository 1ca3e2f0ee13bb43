"""PyTorch front door: two ``torch.optim.Optimizer`` classes (needs the ``torch`` extra).

:class:`Minimizer` runs any :func:`learned_opt.minimize` method (the 15 ``scipy.optimize``
methods, basinhopping / dual_annealing / differential_evolution / shgo, an optax transform) over a
module's parameters. One ``step(closure)`` is a whole minimization: ``closure()`` recomputes the
loss from the parameters, gradients come from ``torch.autograd`` and Hessian methods (Newton-CG,
trust-ncg, trust-krylov, trust-constr; dogleg and trust-exact through a dense Hessian built from
``n`` products) get Hessian-vector products by double backward::

    opt = learned_opt.torch.Minimizer(model.parameters(), method="trust-ncg")
    def closure():
        return loss_fn(model(x), y)          # no backward() needed (first-order methods accept it)
    loss = opt.step(closure)                 # the parameters now hold the minimizer; opt.result

:class:`LearnedOpt` applies a learned optimizer (a shipped pretrained one by name, a checkpoint
file or run directory, ``(lopt, theta)``, or any optax transform) as an ordinary per-step
optimizer. Each ``step`` hands the parameters and gradients (host arrays, no copy for CPU tensors)
to the learned optimizer's jitted JAX update and copies the new values back into the tensors::

    opt = learned_opt.torch.LearnedOpt(model.parameters(), "mlp", num_steps=1000)
    for x, y in batches:
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step(loss=loss)                  # or opt.step(closure); the loss feeds loss features

Parameters are keyed ``"<group>.<index>"`` (or by name when the optimizer was given
``model.named_parameters()``) in the dicts seen by bounds, callbacks and ``result.x``.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Iterable

import numpy as np
import torch

__all__ = ["Minimizer", "LearnedOpt"]


def _keys_and_params(optimizer: torch.optim.Optimizer) -> tuple[list[str], list[torch.Tensor]]:
    keys, params = [], []
    for gi, group in enumerate(optimizer.param_groups):
        names = group.get("param_names")
        for pi, p in enumerate(group["params"]):
            if not p.requires_grad:
                continue
            keys.append(names[pi] if names else f"{gi}.{pi}")
            params.append(p)
    if len(set(keys)) != len(keys):
        raise ValueError("parameter names are not unique across parameter groups")
    if not params:
        raise ValueError("the optimizer has no parameters that require gradients")
    return keys, params


class Minimizer(torch.optim.Optimizer):
    """``torch.optim.Optimizer`` whose ``step(closure)`` runs :func:`learned_opt.minimize`.

    Args:
      params: the module's parameters (``model.parameters()`` or ``model.named_parameters()``).
      method: any ``method`` of :func:`learned_opt.minimize` (default ``"L-BFGS-B"``).
      bounds: ``(lb, ub)``: scalars, or dicts keyed like the parameters (see the module docstring),
        or lists with one entry per parameter; leaves may be scalars, ``None``, ±inf or tensors.
      tol, options, callback: as in :func:`learned_opt.minimize` (the callback receives a dict of
        tensors keyed like the parameters).
      threads: BLAS/OpenMP threads (torch's included) during ``step`` (threadpoolctl). The default 1
        avoids scipy's BLAS and torch's pool spinning against each other, which made small models
        several times slower on a shared 2-core machine; ``None`` leaves the pools alone.

    After ``step`` the parameters hold ``result.x`` and ``self.result`` is the
    :class:`learned_opt.OptimizeResult` (``x``/``jac`` dicts of tensors).
    """

    def __init__(self, params: Iterable, method: Any = "L-BFGS-B", *, bounds: Any = None,
                 tol: float | None = None, options: dict | None = None, callback: Callable | None = None,
                 threads: int | None = 1):
        super().__init__(params, defaults={})
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be a positive int or None; got {threads!r}")
        self.threads = threads
        self.method = method
        self.bounds = bounds
        self.tol = tol
        self.options = dict(options or {})
        self.callback = callback
        self.result = None

    def _bounds(self, keys: list[str]) -> Any:
        if self.bounds is None:
            return None
        if not (isinstance(self.bounds, (tuple, list)) and len(self.bounds) == 2):
            raise ValueError("bounds must be a pair (lb, ub)")
        out = []
        for side, b in zip(("lb", "ub"), self.bounds):
            if isinstance(b, (list, tuple)):
                if len(b) != len(keys):
                    raise ValueError(f"bounds {side} has {len(b)} entries; there are {len(keys)} parameters")
                b = dict(zip(keys, b))
            elif isinstance(b, dict):
                unknown = sorted(set(b) - set(keys))
                if unknown:
                    raise ValueError(f"bounds {side} names unknown parameters {unknown}; parameters are {keys}")
                b = {k: b.get(k) for k in keys}
            out.append(b)
        return tuple(out)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        """Minimize ``closure()`` over the parameters; returns the final loss (a 0-d tensor)."""
        from learned_opt.minimize import METHODS, minimize

        if closure is None or not callable(closure):
            raise ValueError("Minimizer.step needs a closure that returns the loss")
        keys, params = _keys_and_params(self)
        meth = self.method.lower() if isinstance(self.method, str) else None
        if isinstance(self.method, str) and meth not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of "
                             f"{', '.join(m.name for m in METHODS.values())}")

        def load(x: dict) -> None:
            for k, p in zip(keys, params):
                p.copy_(x[k])

        def evaluate(create_graph: bool = False):
            for p in params:
                p.grad = None
            with torch.enable_grad():
                loss = closure()
                if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                    raise ValueError("the closure must return the loss as a scalar tensor")
                if any(p.grad is not None for p in params):  # the closure called backward() itself
                    if create_graph:
                        raise ValueError(f"method {self.method!r} uses Hessian-vector products by double "
                                         "backward: the closure must return the loss without calling "
                                         "loss.backward()")
                    grads = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in params]
                elif loss.requires_grad:
                    grads = torch.autograd.grad(loss, params, allow_unused=True, create_graph=create_graph)
                    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
                else:
                    grads = [torch.zeros_like(p) for p in params]
            return loss, grads

        def value_and_grad(x: dict):
            load(x)
            loss, grads = evaluate()
            return loss.detach().reshape(()), {k: g.detach() for k, g in zip(keys, grads)}

        def hvp_list(x: dict, v: dict) -> list[torch.Tensor]:
            load(x)
            with torch.enable_grad():
                _, grads = evaluate(create_graph=True)
                dot = sum((g * v[k].to(g.dtype)).sum() for k, g in zip(keys, grads) if g.requires_grad)
                if not isinstance(dot, torch.Tensor) or not dot.requires_grad:
                    return [torch.zeros_like(p) for p in params]
                hv = torch.autograd.grad(dot, params, allow_unused=True)
            return [torch.zeros_like(p) if h is None else h.detach() for p, h in zip(params, hv)]

        def hessp(x: dict, v: dict) -> dict:
            return dict(zip(keys, hvp_list(x, v)))

        def hess(x: dict) -> np.ndarray:
            sizes = [p.numel() for p in params]
            n = sum(sizes)
            H = np.empty((n, n))
            for j in range(n):
                e = np.zeros(n)
                e[j] = 1.0
                v, o = {}, 0
                for k, p, s in zip(keys, params, sizes):
                    v[k] = torch.tensor(e[o:o + s]).reshape(p.shape)
                    o += s
                H[:, j] = np.concatenate([h.detach().double().reshape(-1).numpy() for h in hvp_list(x, v)])
            return 0.5 * (H + H.T)

        kw: dict = {}
        hessian = METHODS[meth].hessian if meth in METHODS else "none"
        if hessian == "hessp":
            kw["hessp"] = hessp
        elif hessian == "dense":
            kw["hess"] = hess
        x0 = {k: p.detach().clone() for k, p in zip(keys, params)}
        import contextlib

        from threadpoolctl import threadpool_limits
        limit = contextlib.nullcontext() if self.threads is None else threadpool_limits(self.threads)
        with limit:
            res = minimize(value_and_grad, x0, method=self.method, jac=True, bounds=self._bounds(keys),
                           tol=self.tol, callback=self.callback, options=self.options or None, **kw)
        load(res.x)
        self.result = res
        return torch.tensor(res.fun)


def _resolve_transform(optimizer: Any, num_steps: int | None):
    """The optax transform of a pretrained name, checkpoint path, (lopt, theta) or optax transform."""
    import optax

    from learned_opt.base import LearnedOptimizer
    from learned_opt.checkpoint import as_optax
    from learned_opt.pretrained import load_pretrained, pretrained_names

    if isinstance(optimizer, optax.GradientTransformation):
        if num_steps is not None:
            raise ValueError("num_steps applies to a learned optimizer, not to a ready optax transform")
        return optimizer
    if isinstance(optimizer, tuple) and len(optimizer) == 2 and isinstance(optimizer[0], LearnedOptimizer):
        lopt, theta = optimizer
        return lopt.opt_fn(theta, num_steps=num_steps)
    if isinstance(optimizer, (str, os.PathLike)):
        if isinstance(optimizer, str) and optimizer in pretrained_names():
            return load_pretrained(optimizer, num_steps=num_steps)
        if os.path.exists(optimizer):
            return as_optax(optimizer, num_steps=num_steps)
        raise ValueError(f"optimizer {str(optimizer)!r} is neither a pretrained optimizer "
                         f"({', '.join(pretrained_names())}) nor an existing checkpoint file or run directory")
    raise TypeError("optimizer must be a pretrained name, a checkpoint path, (lopt, theta) or an optax "
                    f"GradientTransformation; got {type(optimizer).__name__}")


_JAX_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


def _to_torch(x: Any) -> torch.Tensor:
    """A JAX array as a CPU tensor: zero-copy through DLPack, else through a host copy."""
    try:
        return torch.from_dlpack(x)
    except Exception:  # noqa: BLE001 (a backend without DLPack export)
        return torch.from_numpy(np.array(x))


class LearnedOpt(torch.optim.Optimizer):
    """``torch.optim.Optimizer`` applying a learned optimizer (its math in JAX) to torch parameters.

    Args:
      params: the model's parameters (or named parameters); every parameter with
        ``requires_grad`` is part of the optimizer's state, in a fixed order.
      optimizer: a pretrained name (``learned_opt.pretrained_names()``, default ``"mlp"``), a
        checkpoint file or run directory, ``(lopt, theta)`` or any optax transform.
      num_steps: the training horizon for optimizers with horizon-fraction features.

    float32/float64 parameters are updated in their own dtype; float16/bfloat16 ones are computed
    in float32 and rounded back. Parameters whose ``.grad`` is None get a zero gradient. The
    learned optimizer's state is saved by ``state_dict()`` and restored by ``load_state_dict()``.
    """

    def __init__(self, params: Iterable, optimizer: Any = "mlp", *, num_steps: int | None = None):
        super().__init__(params, defaults={})
        import optax

        self.tx = _resolve_transform(optimizer, num_steps)
        self._extra = isinstance(self.tx, optax.GradientTransformationExtraArgs)
        self._jax_state = None
        self._steps = 0
        self._fns: dict = {}

    def _update_fn(self, with_loss: bool):
        if with_loss not in self._fns:
            import jax
            import optax

            tx, extra = self.tx, self._extra

            def update(grads, state, params, loss):
                if extra and with_loss:
                    updates, state = tx.update(grads, state, params, loss=loss)  # pyright: ignore[reportCallIssue]  (extra: an ExtraArgs transform)
                else:
                    updates, state = tx.update(grads, state, params)
                return optax.apply_updates(params, updates), state

            self._fns[with_loss] = jax.jit(update)
        return self._fns[with_loss]

    @staticmethod
    def _host(t: torch.Tensor) -> np.ndarray:
        t = t.detach()
        if t.dtype not in _JAX_DTYPES:
            t = t.to(torch.float32)
        return t.cpu().numpy()

    def _init_state(self, params_np: dict) -> None:
        import jax
        import jax.numpy as jnp

        x64 = any(a.dtype == np.float64 for a in params_np.values())
        with jax.enable_x64(x64):
            self._jax_state = self.tx.init({k: jnp.asarray(v) for k, v in params_np.items()})

    def step(self, closure: Callable[[], torch.Tensor] | None = None,  # type: ignore[override]
             loss: torch.Tensor | float | None = None) -> torch.Tensor | None:
        """One learned-optimizer step from the parameters' ``.grad``.

        ``closure`` (optional) recomputes the loss and calls ``backward()``; otherwise pass the
        step's ``loss`` (a tensor or float) so optimizers with loss features see it. Returns the
        loss when one was given.
        """
        import jax
        import jax.numpy as jnp

        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        keys, params = _keys_and_params(self)
        params_np = {k: self._host(p) for k, p in zip(keys, params)}
        grads_np = {k: np.zeros_like(params_np[k]) if p.grad is None else self._host(p.grad).astype(
            params_np[k].dtype, copy=False) for k, p in zip(keys, params)}
        if self._jax_state is None:
            self._init_state(params_np)
        x64 = any(a.dtype == np.float64 for a in params_np.values())
        lossv = None if loss is None else float(loss.detach() if isinstance(loss, torch.Tensor) else loss)
        with jax.enable_x64(x64):
            new, self._jax_state = self._update_fn(lossv is not None)(
                grads_np, self._jax_state, params_np, None if lossv is None else jnp.asarray(lossv, jnp.float32))
        with torch.no_grad():
            for k, p in zip(keys, params):
                p.copy_(_to_torch(new[k]))
        self._steps += 1
        return loss if isinstance(loss, torch.Tensor) or loss is None else torch.tensor(loss)

    def state_dict(self) -> dict:
        """torch's optimizer state plus the learned optimizer's state leaves (NumPy arrays)."""
        import jax
        out = super().state_dict()
        leaves = None if self._jax_state is None else [np.asarray(x) for x in jax.tree_util.tree_leaves(
            jax.device_get(self._jax_state))]
        out["learned_opt"] = {"steps": self._steps, "state_leaves": leaves}
        return out

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore :meth:`state_dict` (the same parameters, in the same order)."""
        import jax
        state_dict = dict(state_dict)
        extra = state_dict.pop("learned_opt", None)
        super().load_state_dict(state_dict)
        if extra is None or extra.get("state_leaves") is None:
            self._jax_state, self._steps = None, 0 if extra is None else int(extra.get("steps", 0))
            return
        keys, params = _keys_and_params(self)
        self._init_state({k: self._host(p) for k, p in zip(keys, params)})
        treedef = jax.tree_util.tree_structure(self._jax_state)
        leaves = extra["state_leaves"]
        if treedef.num_leaves != len(leaves):
            raise ValueError(f"state_dict holds {len(leaves)} learned-optimizer state arrays; this optimizer "
                             f"over these parameters has {treedef.num_leaves}")
        self._jax_state = jax.tree_util.tree_unflatten(treedef, [np.asarray(x) for x in leaves])
        self._steps = int(extra.get("steps", 0))
