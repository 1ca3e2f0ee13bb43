"""The evaluation runner against independent computations: scipy by hand, minimize(optax), an
unvectorized Python training loop."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize

from eval import baselines
from eval.methods import as_method, optax_method
from eval.runner import init_params, prepare_task, run_method
from tasks.base import EVAL_KEY_SEED


def _flatten(tree, like=None):
    """Leaves of a nested dict in the insertion order of ``like`` (default: ``tree`` itself) --
    what learned_opt.minimize packs. (jax.grad returns dicts with sorted keys, so gradients must
    be read in the parameters' order.)"""
    like = tree if like is None else like
    if isinstance(like, dict):
        out = []
        for k, v in like.items():
            out.extend(_flatten(tree[k], v))
        return out
    return [tree]


def _unflatten(like, vec):
    pos = [0]

    def build(node):
        if isinstance(node, dict):
            return {k: build(v) for k, v in node.items()}
        n = int(np.size(node))
        part = vec[pos[0]:pos[0] + n].reshape(np.shape(node))
        pos[0] += n
        return jnp.asarray(part, jnp.asarray(node).dtype)

    return build(like)


@pytest.fixture(scope="module")
def logreg():
    from tasks.regression import LogisticRegressionTask
    return LogisticRegressionTask(num_examples=256, dim=8, num_classes=3)


def test_lbfgs_equals_scipy_on_packed_vector(logreg):
    budget = 80
    run = run_method(logreg, "L-BFGS-B", budget, seeds=[0])
    curve = run.selected[0]

    params0 = init_params(logreg, 0)
    full = logreg.datasets.train.full()
    key = jax.random.PRNGKey(EVAL_KEY_SEED)
    vg = jax.jit(jax.value_and_grad(lambda p: logreg.loss(p, key, full)))

    def fun(z):
        v, g = vg(_unflatten(params0, z))
        return float(v), np.concatenate([np.asarray(a, np.float64).ravel() for a in _flatten(g, params0)])

    x0 = np.concatenate([np.asarray(a, np.float64).ravel() for a in _flatten(params0)])
    res = scipy.optimize.minimize(fun, x0, jac=True, method="L-BFGS-B",
                                  options={"maxiter": budget, "maxfun": budget})
    assert curve.info["nfev"] == res.nfev
    assert curve.info["nit"] == res.nit
    # full-batch task: the evaluation objective is the training objective
    assert curve.train[-1] == pytest.approx(res.fun, rel=1e-6, abs=1e-7)
    assert curve.x[-1] == res.nfev
    assert np.all(np.diff(curve.x) > 0)
    # L-BFGS-B descends: every recorded iterate is no worse than the start
    assert np.all(curve.train <= curve.train[0] + 1e-6)


def test_first_order_scan_equals_minimize_with_optax(logreg):
    """The runner's jitted scan takes exactly the steps learned_opt.minimize(method=optax) takes."""
    from learned_opt import minimize

    T = 25
    run = run_method(logreg, optax_method(optax.adam(0.05), name="adam0.05"), T, seeds=[1])
    curve = run.selected[0]
    full = logreg.datasets.train.full()
    key = jax.random.PRNGKey(EVAL_KEY_SEED)
    # full-batch task: every step uses the whole training split; evaluation every step
    assert list(curve.steps) == list(range(T + 1))

    res = minimize(lambda p: logreg.loss(p, key, full), init_params(logreg, 1), method=optax.adam(0.05),
                   options={"maxiter": T})
    np.testing.assert_allclose(curve.train, res.loss_history, rtol=2e-5, atol=1e-6)


def test_minibatch_sweep_matches_unvectorized_loop():
    """A vmapped learning-rate sweep on a minibatch task equals plain Python loops with optax."""
    from tasks.regression import LogisticRegressionTask

    task = LogisticRegressionTask(num_examples=300, dim=6, num_classes=3, batch_size=32)
    assert not task.full_batch
    T, lrs = 12, (0.01, 0.3)
    run = run_method(task, baselines.adam_sweep(lrs), T, seeds=[3])
    setup = prepare_task(task, T)

    arrays = {k: np.asarray(v) for k, v in task.datasets.train.arrays.items()}
    n = len(next(iter(arrays.values())))
    key = jax.random.PRNGKey(EVAL_KEY_SEED)
    vg = jax.jit(jax.value_and_grad(task.loss))
    draw = jax.jit(lambda k, t: jax.random.split(jax.random.fold_in(k, t)))
    randint = jax.jit(lambda k: jax.random.randint(k, (32,), 0, n))
    for g, lr in enumerate(lrs):
        k_init, k_run = jax.random.split(jax.random.PRNGKey(3))
        p = task.init(k_init)
        opt = optax.adam(lr)
        s = opt.init(p)
        update = jax.jit(opt.update)
        for t in range(T):
            kb, kl = draw(k_run, t)
            idx = np.asarray(randint(kb))
            batch = {k: a[idx] for k, a in arrays.items()}
            loss, grads = vg(p, kl, batch)
            u, s = update(grads, s, p)
            p = optax.apply_updates(p, u)
        c = run.curves[g][0]
        for obj in ("train", "valid", "test"):
            want = float(task.loss(p, key, setup.eval_batches[obj]))
            assert c.objective(obj)[-1] == pytest.approx(want, rel=1e-4), obj
    # selected on the inner_valid split, not on the reported test split
    valid_finals = [run.curves[g][0].valid[-1] for g in range(len(lrs))]
    assert run.selected_on == "inner_valid"
    assert run.chosen == int(np.argmin(valid_finals))
    assert run.hparams["learning_rate"] == lrs[run.chosen]


def test_classical_methods_respect_budget_and_skip_rules():
    from tasks.quadratic import QuadraticTask

    q = QuadraticTask(dim=6, condition_number=50.0)
    T = 30
    setup = prepare_task(q, T)
    for name in ("CG", "BFGS", "trust-ncg"):
        r = run_method(q, name, T, seeds=[0, 1], setup=setup)
        assert r.skipped is None
        for c in r.selected:
            assert c.x[-1] <= T
            assert np.isfinite(c.test[-1]) and c.test[-1] < c.test[0]
    # trust-ncg pays for Hessian-vector products
    tr = run_method(q, "trust-ncg", T, seeds=[0], setup=setup).selected[0]
    assert tr.info["nhev"] > 0
    from tasks.regression import LogisticRegressionTask
    mb = LogisticRegressionTask(num_examples=64, dim=4, batch_size=16)
    assert run_method(mb, "CG", 5, seeds=[0]).skipped
    assert run_method(mb, "L-BFGS-B", 5, seeds=[0]).skipped  # exact objectives only


def test_bad_inputs_are_rejected():
    from tasks.quadratic import QuadraticTask

    q = QuadraticTask(dim=3)
    with pytest.raises(ValueError, match="num_steps"):
        prepare_task(q, 0)
    with pytest.raises(ValueError, match="unknown method"):
        as_method("adamw-nope")
    with pytest.raises(TypeError):
        as_method(3.0)
    with pytest.raises(ValueError, match="seeds"):
        run_method(q, "adam", 5, seeds=[])


def test_checkpoint_method_is_the_saved_optimizer(tmp_path):
    import learned_opt
    from eval.methods import from_checkpoint, untrained_learned

    lopt = learned_opt.MLPLOpt()
    theta = lopt.init(jax.random.PRNGKey(1))
    theta = jax.tree_util.tree_map(lambda a: a * 1.5, theta)  # not the initial θ
    learned_opt.save(tmp_path / "run" / "theta_00000007.lopt", lopt, theta)
    m = from_checkpoint(str(tmp_path / "run"))  # a run directory: newest theta_<step>.lopt
    assert m.kind == "learned" and m.name == "learned:run"
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    grads = {"w": jnp.full((3, 2), 0.3), "b": jnp.array([1.0, -2.0])}
    ref = lopt.opt_fn(theta, num_steps=10)
    got = m.make({}, 10)

    def first_update(opt):
        return jax.jit(lambda g, p: opt.update(g, opt.init(p), p, loss=jnp.asarray(1.0))[0])(grads, params)

    u_ref, u_got = first_update(ref), first_update(got)
    jax.tree_util.tree_map(np.testing.assert_array_equal, u_ref, u_got)
    u0 = first_update(untrained_learned("mlp").make({}, 10))
    assert not np.allclose(np.asarray(u0["w"]), np.asarray(u_got["w"]))
    with pytest.raises(ValueError, match="does not exist"):
        from_checkpoint(str(tmp_path / "missing.lopt"))
    with pytest.raises(ValueError, match="unknown learned optimizer"):
        untrained_learned("nope")


def test_diverging_lane_is_reported_diverged_and_leaves_healthy_lanes_unchanged():
    """SGD + momentum at a huge rate explodes on a quadratic inside the same vmapped program as a
    healthy rate: the exploding lane is recorded as diverged (non-finite, scored as a loss with
    normalized loss 2) and the healthy lane is bit-for-bit what it is next to another healthy lane
    (same program shape: a different number of lanes may round differently)."""
    from eval import metrics, scoring
    from eval.protocol import Protocol
    from tasks.quadratic import QuadraticTask

    q = QuadraticTask(dim=6, condition_number=50.0)
    T, seeds = 60, [0, 1]
    setup = prepare_task(q, T)
    both = run_method(q, baselines.hand_sweep("sgdm", (0.01, 1e3), name="sgdm_pair"), T, seeds=seeds, setup=setup)
    alone = run_method(q, baselines.hand_sweep("sgdm", (0.01, 0.02), name="sgdm_ok"), T, seeds=seeds, setup=setup)
    for c_both, c_alone in zip(both.curves[0], alone.curves[0]):
        for obj in ("train", "valid", "test"):
            np.testing.assert_array_equal(c_both.objective(obj), c_alone.objective(obj))
        assert not c_both.diverged
    assert all(c.diverged for c in both.curves[1])
    assert both.chosen == 0  # the healthy rate is selected

    # a method that *is* that diverging setting: counted diverged, scored 2, a loss
    runs = {"adam": run_method(q, baselines.adam_sweep((0.01, 0.1)), T, seeds=seeds, setup=setup),
            "boom": run_method(q, baselines.hand_sweep("sgdm", (1e3,), name="boom"), T, seeds=seeds, setup=setup)}
    ts = scoring.score_task("q", "fixed", T, runs, ["adam"], Protocol(baselines=("adam",)))
    boom = ts.runs["boom"]
    assert boom.diverged_runs == len(seeds)
    assert all(s.norm_final_test == metrics.NORM_CLIP for s in boom.seeds)
    assert ts.comparisons["boom"]["adam"].outcome == "loss"


def test_inputs_program_never_batches_task_init():
    """``task.init`` runs unbatched in the seed-inputs program (a batched QR custom call, as the
    orthogonal initializer makes, can deadlock XLA's intra-op pool on 2 cores), and the initial
    parameters are those of ``init_params`` seed by seed."""
    from eval.runner import _inputs_program, seed_inputs
    from tasks.image_mlp import ImageMLPTask

    task = ImageMLPTask(dataset="digits", hidden_sizes=(40, 40), w_init="orthogonal")
    setup = prepare_task(task, 5)
    seeds = [0, 1, 2]
    jaxpr = jax.make_jaxpr(_inputs_program(setup))(jnp.asarray(seeds, jnp.uint32))

    def walk(jx):
        for eqn in jx.eqns:
            yield eqn
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                yield from walk(sub)

    qr = [e for e in walk(jaxpr.jaxpr) if e.primitive.name in ("geqrf", "householder_product", "qr", "orgqr")]
    assert qr, "the orthogonal initializer should contain a QR"
    assert all(v.aval.ndim == 2 for e in qr for v in e.invars), [[v.aval.shape for v in e.invars] for e in qr]
    params0 = seed_inputs(setup, seeds)[0]
    for i, s in enumerate(seeds):
        for a, b in zip(jax.tree_util.tree_leaves(params0), jax.tree_util.tree_leaves(init_params(task, s))):
            np.testing.assert_array_equal(np.asarray(a[i]), np.asarray(b))
