"""When does backtrack_on_spike fire on one suite task (per seed)? Eager replay of the eval inputs."""
import sys
import jax, jax.numpy as jnp, numpy as np, optax
from eval.suites import get_suite
from eval.runner import prepare_task, seed_inputs
from learned_opt import checkpoint

suite, task_name, path = sys.argv[1], sys.argv[2], sys.argv[3]
st = next(t for t in get_suite(suite).resolve() if t.name == task_name)
setup = prepare_task(st.build(), st.num_steps)
task = setup.task
lopt, theta = checkpoint.load(path)
for seed in (0, 1, 2):
    params0, idx, keys = seed_inputs(setup, [seed])
    p = jax.tree_util.tree_map(lambda x: x[0], params0)
    opt = lopt.opt_fn(theta, num_steps=st.num_steps)
    state = opt.init(p)
    arrays = None if setup.train_arrays is None else {k: jnp.asarray(v) for k, v in setup.train_arrays.items()}
    lg = jax.jit(jax.value_and_grad(lambda p, b, k: task.loss(p, k, b)))
    upd = jax.jit(opt.update)
    n = 0
    for t in range(st.num_steps):
        batch = None if arrays is None else {k: a[idx[0, t]] for k, a in arrays.items()}
        l, g = lg(p, batch, keys[0, t])
        u, state = upd(g, state, p, loss=l)
        if int(state.num_spikes) > n:
            n = int(state.num_spikes)
            st = state.loss_stats
            print(f"seed {seed} step {t}: loss {float(l):.4g} first {float(st.first):.4g} "
                  f"mean {float(st.mean[0]):.4g} sd {float(np.sqrt(st.var[0])):.3g}")
        p = optax.apply_updates(p, u)
    print(f"seed {seed}: {n} spikes, final train loss {float(l):.4g}")
