"""torch tensors in ``learned_opt.minimize``: autograd gradients, double-backward Hessian-vector
products, results as tensors of x0's dtypes and key order, the same iterates as the JAX run."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch
torch.set_num_threads(1)  # a spinning 2-thread pool is many times slower on a shared 2-core machine

from learned_opt import _torch_bridge, minimize  # noqa: E402
from learned_opt.pytree_vector import make_spec  # noqa: E402


def rosen_torch(p):
    x, y = p["a"], p["b"]
    return (100 * (y - x ** 2) ** 2 + (1 - x) ** 2).sum()


def rosen_jax(p):
    x, y = p["a"], p["b"]
    return jnp.sum(100 * (y - x ** 2) ** 2 + (1 - x) ** 2)


A0, B0 = [-1.2, 0.5, 0.9], [1.0, 0.3, -0.4]


def _cat(x):
    return np.concatenate([np.asarray(x["a"], np.float64), np.asarray(x["b"], np.float64)])


@pytest.mark.parametrize("method", ["L-BFGS-B", "trust-ncg", "Newton-CG", "trust-exact", "trust-krylov"])
def test_torch_rosenbrock_matches_jax_iterates_float64(method):
    x0t = {"a": torch.tensor(A0, dtype=torch.float64), "b": torch.tensor(B0, dtype=torch.float64)}
    x0j = {"a": np.array(A0), "b": np.array(B0)}
    it_t, it_j = [], []
    rt = minimize(rosen_torch, x0t, method=method, callback=lambda x: it_t.append(_cat(x)))
    rj = minimize(rosen_jax, x0j, method=method, callback=lambda x: it_j.append(_cat(x)))
    assert rt.success and rj.success
    assert (rt.nit, rt.nfev, rt.njev, rt.get("nhev")) == (rj.nit, rj.nfev, rj.njev, rj.get("nhev"))
    assert len(it_t) == len(it_j) > 5
    # same arithmetic up to the order of floating-point operations inside the two autodiffs: the
    # paths agree to ~1e-13 at first; Rosenbrock's valley amplifies those last-bit differences
    # over tens of iterations, so the tail is compared more loosely
    it_t, it_j = np.array(it_t), np.array(it_j)
    np.testing.assert_allclose(it_t[:15], it_j[:15], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(it_t, it_j, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(rt.fun_history[:15], rj.fun_history[:15], rtol=1e-9)
    assert isinstance(rt.x["a"], torch.Tensor) and rt.x["a"].dtype == torch.float64
    np.testing.assert_allclose(_cat(rt.x), _cat(rj.x), atol=1e-4)
    np.testing.assert_allclose(_cat(rt.x), 1.0, atol=1e-4)


def test_double_backward_hvp_equals_analytic_hessian():
    rng = np.random.default_rng(0)
    M = rng.standard_normal((5, 5))
    A = torch.tensor(M @ M.T + np.eye(5))
    x0 = {"u": torch.tensor(rng.standard_normal(2)), "w": torch.tensor(rng.standard_normal(3))}
    spec = make_spec(x0)

    def f(p):
        v = torch.cat([p["u"], p["w"]])
        return 0.5 * v @ A @ v + 0.25 * (v ** 4).sum()

    x = rng.standard_normal(5)
    p = rng.standard_normal(5)
    H = A.numpy() + 3 * np.diag(x ** 2)
    np.testing.assert_allclose(_torch_bridge.hvp(f, spec, x, p, ()), H @ p, rtol=1e-12)
    np.testing.assert_allclose(_torch_bridge.hessian(f, spec, x, ()), H, rtol=1e-12)
    _, g = _torch_bridge.value_and_grad(f, spec, x, ())
    np.testing.assert_allclose(g, A.numpy() @ x + x ** 3, rtol=1e-12)


def test_dtypes_key_order_and_tensor_results():
    x0 = {"z": torch.tensor([-1.0, 2.0], dtype=torch.float16), "a": torch.tensor([[0.5]], dtype=torch.float32),
          "m": torch.tensor(3.0, dtype=torch.float64), "bf": torch.tensor([0.25], dtype=torch.bfloat16)}
    seen = []

    def f(p):
        seen.append([(k, v.dtype, tuple(v.shape)) for k, v in p.items()])
        return sum(((v.float() - 1.0) ** 2).sum() for v in p.values())

    res = minimize(f, x0, method="L-BFGS-B")
    want = [(k, v.dtype, tuple(v.shape)) for k, v in x0.items()]
    assert all(s == want for s in seen)
    assert [(k, v.dtype, tuple(v.shape)) for k, v in res.x.items()] == want
    assert [(k, v.dtype) for k, v in res.jac.items()] == [(k, v.dtype) for k, v in x0.items()]
    for v in res.x.values():
        assert isinstance(v, torch.Tensor) and not v.requires_grad
        np.testing.assert_allclose(v.float().numpy(), 1.0, atol=1e-2)
    # x0 itself is untouched
    assert float(x0["m"]) == 3.0


def test_jac_true_torch_objective_like_dict_minimize():
    def vg(p, target):
        q = {k: v.detach().requires_grad_(True) for k, v in p.items()}
        loss = sum(((v - target) ** 2).sum() for v in q.values())
        grads = torch.autograd.grad(loss, list(q.values()))
        return loss.detach(), dict(zip(q, grads))

    x0 = {"w": torch.zeros(3), "b": torch.zeros(1)}
    res = minimize(vg, x0, jac=True, args=(torch.tensor(2.0),), method="CG", options={"maxiter": 50})
    assert res.success
    for v in res.x.values():
        np.testing.assert_allclose(v.numpy(), 2.0, atol=1e-5)


def test_bounds_args_and_callback_with_tensors():
    target = torch.tensor([3.0, -3.0], dtype=torch.float64)
    seen = []

    def f(p, t):
        return ((p["x"] - t) ** 2).sum()

    res = minimize(f, {"x": torch.zeros(2, dtype=torch.float64)}, args=(target,), method="L-BFGS-B",
                   lb_dict={"x": torch.tensor([-1.0, -1.0])}, ub_dict={"x": 1.0},
                   callback=lambda x: seen.append(x["x"].clone()))
    np.testing.assert_allclose(res.x["x"].numpy(), [1.0, -1.0])
    assert seen and all(isinstance(s, torch.Tensor) and s.abs().max() <= 1.0 for s in seen)


@pytest.mark.parametrize("method", ["basinhopping", "dual_annealing", "Nelder-Mead", "TNC"])
def test_global_and_gradient_free_methods_with_torch(method):
    opts = {"rng": 0, "niter": 3} if method == "basinhopping" else {"rng": 0, "maxiter": 30} \
        if method == "dual_annealing" else {"maxiter": 400}
    x0 = {"a": torch.tensor([0.5, 0.5], dtype=torch.float64), "b": torch.tensor([0.2, 0.2], dtype=torch.float64)}
    res = minimize(rosen_torch, x0, method=method, options=opts,
                   bounds=(-2.0, 2.0) if method in ("dual_annealing", "TNC") else None)
    assert isinstance(res.x["a"], torch.Tensor)
    assert res.fun < float(rosen_torch(x0))


def test_optax_method_with_torch_objective():
    import optax
    res = minimize(lambda p: ((p["a"] - 1) ** 2).sum() + ((p["b"] + 2) ** 2).sum(),
                   {"a": torch.zeros(3), "b": torch.zeros(2)}, method=optax.adam(0.1), options={"maxiter": 300})
    assert isinstance(res.x["a"], torch.Tensor) and res.x["a"].dtype == torch.float32
    np.testing.assert_allclose(res.x["a"].numpy(), 1.0, atol=1e-3)
    np.testing.assert_allclose(res.x["b"].numpy(), -2.0, atol=1e-3)


def test_bad_torch_input_names_the_key():
    with pytest.raises(TypeError, match=r"\['n'\].*torch.int64"):
        minimize(rosen_torch, {"a": torch.zeros(2), "n": torch.zeros(2, dtype=torch.int64)})
    with pytest.raises(ValueError, match="must return a scalar.*shape \\(2,\\)"):
        minimize(lambda p: p["a"] ** 2, {"a": torch.zeros(2)}, method="BFGS")
    with pytest.raises(ValueError, match="complex-step"):
        minimize(rosen_torch, {"a": torch.zeros(2), "b": torch.zeros(2)}, jac="cs", method="BFGS")
