"""``learned_opt.torch``: the minimize-backed ``torch.optim`` optimizer matches ``minimize`` on the
same problem; the learned-optimizer one makes exactly the JAX optimizer's updates."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch
torch.set_num_threads(1)  # a spinning 2-thread pool is many times slower on a shared 2-core machine

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import learned_opt  # noqa: E402
from learned_opt import minimize  # noqa: E402
from learned_opt.torch import LearnedOpt, Minimizer  # noqa: E402


def _data(dtype=torch.float64, n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 3, generator=g, dtype=dtype)
    y = (X @ torch.tensor([1.0, -2.0, 0.5], dtype=dtype)).unsqueeze(1) + 0.3 * torch.sin(2 * X[:, :1])
    return X, y


def _model(dtype=torch.float64, seed=1, hidden=4):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1)).to(dtype)


@pytest.mark.parametrize("method, options", [("L-BFGS-B", {"maxiter": 60}), ("trust-ncg", {"maxiter": 40}),
                                             ("trust-exact", {"maxiter": 30}), ("BFGS", {"maxiter": 60})])
def test_minimizer_trains_a_module_and_matches_minimize(method, options):
    X, y = _data()
    model = _model()
    init = {k: v.detach().clone() for k, v in model.named_parameters()}

    def mse(out):
        return ((out - y) ** 2).mean()

    # the same problem through minimize on a dict of tensors (a functional model)
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1):  # as Minimizer does by default (speed only)
        ref = minimize(lambda p: mse(torch.func.functional_call(model, p, (X,))), init, method=method,
                       options=options)

    opt = Minimizer(model.named_parameters(), method=method, options=options)
    loss = opt.step(lambda: mse(model(X)))
    res = opt.result
    assert float(loss) == pytest.approx(res.fun) and res.fun < 0.2 * float(mse(torch.func.functional_call(
        model, init, (X,))))
    assert list(res.x) == list(init)  # keyed by parameter name
    assert res.nit == ref.nit
    for k, p in model.named_parameters():
        np.testing.assert_allclose(p.detach().numpy(), ref.x[k].numpy(), rtol=1e-6, atol=1e-8, err_msg=k)
        np.testing.assert_array_equal(p.detach().numpy(), res.x[k].numpy())  # the parameters hold result.x


def test_minimizer_bounds_and_closure_calling_backward():
    X, y = _data()
    model = _model()
    bias = model[2].bias

    def closure():  # torch.optim.LBFGS style: the closure calls backward itself
        loss = ((model(X) - y) ** 2).mean()
        loss.backward()
        return loss

    opt = Minimizer(model.named_parameters(), method="L-BFGS-B", bounds=({"2.bias": 0.25}, {"2.bias": 0.5}),
                    options={"maxiter": 50})
    opt.step(closure)
    assert 0.25 <= float(bias.detach()) <= 0.5
    with pytest.raises(ValueError, match="double backward.*without calling loss.backward"):
        Minimizer(model.parameters(), method="trust-ncg").step(closure)
    with pytest.raises(ValueError, match=r"unknown parameters \['nope'\]"):
        Minimizer(model.named_parameters(), bounds=({"nope": 0.0}, None)).step(closure)
    with pytest.raises(ValueError, match="closure"):
        Minimizer(model.parameters()).step(None)


def test_minimizer_global_method_with_bounds():
    X, y = _data()
    lin = torch.nn.Linear(3, 1).double()
    opt = Minimizer(lin.parameters(), method="dual_annealing", bounds=(-3.0, 3.0),
                    options={"maxiter": 30, "rng": 0})
    loss = opt.step(lambda: ((lin(X) - y) ** 2).mean())
    lsq = np.linalg.lstsq(np.c_[X.numpy(), np.ones(len(X))], y.numpy()[:, 0], rcond=None)[0]
    np.testing.assert_allclose(lin.weight.detach().numpy()[0], lsq[:3], atol=1e-4)
    assert float(loss) == pytest.approx(opt.result.fun)


# ------------------------------------------------------------------------------------------------
# the learned optimizer
# ------------------------------------------------------------------------------------------------
def _jax_reference(tx, params0: dict, grads_seq: list, losses: list):
    """Parameters after each step of the JAX optimizer on the recorded gradients."""
    import optax
    params = {k: jnp.asarray(v) for k, v in params0.items()}
    state = tx.init(params)
    out = []
    for g, loss in zip(grads_seq, losses):
        updates, state = tx.update({k: jnp.asarray(v) for k, v in g.items()}, state, params,
                                   loss=jnp.asarray(loss, jnp.float32))
        params = optax.apply_updates(params, updates)
        out.append({k: np.asarray(v) for k, v in params.items()})
    return out


@pytest.mark.parametrize("name", ["mlp", "hierarchical"])
def test_learned_opt_updates_equal_the_jax_optimizers(name):
    X, y = _data(torch.float32)
    model = _model(torch.float32, hidden=8)
    opt = LearnedOpt(model.parameters(), name, num_steps=50)
    params0 = {f"0.{i}": p.detach().numpy().copy() for i, p in enumerate(model.parameters())}
    grads_seq, losses, after = [], [], []
    for _ in range(6):
        opt.zero_grad()
        loss = ((model(X) - y) ** 2).mean()
        loss.backward()
        grads_seq.append({f"0.{i}": p.grad.numpy().copy() for i, p in enumerate(model.parameters())})
        losses.append(loss.item())
        opt.step(loss=loss)
        after.append({f"0.{i}": p.detach().numpy().copy() for i, p in enumerate(model.parameters())})
    ref = _jax_reference(learned_opt.load_pretrained(name, num_steps=50), params0, grads_seq, losses)
    for step, (a, r) in enumerate(zip(after, ref)):
        for k in a:
            np.testing.assert_allclose(a[k], r[k], rtol=1e-6, atol=1e-7, err_msg=f"step {step} {k}")
    moved = sum(float(np.abs(after[-1][k] - params0[k]).max()) for k in params0)
    assert moved > 1e-4  # the comparison is not between two frozen models


def test_learned_opt_from_checkpoint_and_lopt_theta(tmp_path):
    lopt = learned_opt.MLPLOpt()
    theta = lopt.init(jax.random.PRNGKey(3))
    from learned_opt.checkpoint import checkpoint_filename
    path = learned_opt.save(tmp_path / checkpoint_filename(7), lopt, theta)  # a file in a run directory
    X, y = _data(torch.float32)
    runs = []
    for spec in (str(path), tmp_path, (lopt, theta)):
        model = _model(torch.float32)
        opt = LearnedOpt(model.parameters(), spec, num_steps=20)
        for _ in range(3):
            opt.zero_grad()
            loss = ((model(X) - y) ** 2).mean()
            loss.backward()
            opt.step(loss=loss)
        runs.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy())
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(runs[0], runs[2])


def test_learned_opt_trains_and_state_dict_round_trips():
    X, y = _data(torch.float32, n=128)
    model = _model(torch.float32, hidden=16)
    opt = LearnedOpt(model.parameters(), "mlp", num_steps=150)

    def closure():
        opt.zero_grad()
        loss = ((model(X) - y) ** 2).mean()
        loss.backward()
        return loss

    first = closure().item()
    for _ in range(120):
        loss = opt.step(closure)
    assert loss.item() < 0.1 * first
    # resume: a fresh optimizer loaded from state_dict continues exactly like the original
    saved_params = [p.detach().clone() for p in model.parameters()]
    sd = opt.state_dict()
    opt.step(closure)
    cont = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p, s in zip(model.parameters(), saved_params):
            p.copy_(s)
    opt2 = LearnedOpt(model.parameters(), "mlp", num_steps=150)
    opt2.load_state_dict(sd)
    opt = opt2
    opt2.step(closure)
    for a, b in zip(cont, model.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.detach().numpy())


def test_learned_opt_bad_input():
    model = _model(torch.float32)
    with pytest.raises(ValueError, match="neither a pretrained optimizer.*mlp"):
        LearnedOpt(model.parameters(), "no-such-optimizer")
    with pytest.raises(TypeError, match="optimizer must be"):
        LearnedOpt(model.parameters(), 3)


@pytest.mark.parametrize("name", ["mlp", "hierarchical"])
def test_learned_opt_matches_minimize_with_the_same_learned_optimizer(name):
    """Full-batch training: LearnedOpt for N steps == minimize(method=<the same optax transform>,
    maxiter=N) on the functional model over a dict of tensors (autograd gradients in both)."""
    X, y = _data(torch.float32)
    model = _model(torch.float32, hidden=8)
    init = {k: v.detach().clone() for k, v in model.named_parameters()}
    n = 12

    def mse(out):
        return ((out - y) ** 2).mean()

    tx = learned_opt.load_pretrained(name, num_steps=n)
    res = minimize(lambda p: mse(torch.func.functional_call(model, p, (X,))), init, method=tx,
                   options={"maxiter": n})
    opt = LearnedOpt(model.named_parameters(), name, num_steps=n)
    losses = []
    for _ in range(n):
        opt.zero_grad()
        loss = mse(model(X))
        loss.backward()
        losses.append(loss.item())
        opt.step(loss=loss)
    assert res.nit == n and losses[-1] < losses[0]
    np.testing.assert_allclose(losses, res.loss_history[:n], rtol=1e-5)
    for k, p in model.named_parameters():
        np.testing.assert_allclose(p.detach().numpy(), res.x[k].numpy(), rtol=1e-5, atol=1e-6, err_msg=k)
