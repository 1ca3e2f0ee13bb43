"""learned_opt.minimize reads scipy's private solver signatures (learned_opt/minimize/_scipy_compat.py)
to reject unknown options. If scipy moves or renames them, option checking would silently stop:
these tests fail loudly instead."""
import pytest

from learned_opt.minimize import METHODS, _scipy_compat

LOCAL = [m.key for m in METHODS.values() if not m.is_global]


@pytest.mark.parametrize("meth", LOCAL)
def test_every_local_method_has_a_private_solver_function(meth):
    fn = _scipy_compat.solver_function(meth)  # raises if scipy moved it
    assert callable(fn)
    opts = _scipy_compat.valid_options(meth)
    assert opts is not None and opts, f"scipy's solver for {meth} has no recognisable options"


@pytest.mark.parametrize("meth, option", [
    ("l-bfgs-b", "maxcor"), ("l-bfgs-b", "ftol"), ("bfgs", "gtol"), ("cg", "gtol"), ("newton-cg", "xtol"),
    ("nelder-mead", "xatol"), ("powell", "xtol"), ("tnc", "maxfun"), ("cobyla", "rhobeg"),
    ("cobyqa", "initial_tr_radius"), ("slsqp", "ftol"), ("trust-constr", "gtol"), ("trust-ncg", "gtol"),
    ("trust-krylov", "inexact"), ("dogleg", "initial_trust_radius"), ("trust-exact", "max_trust_radius"),
])
def test_known_options_are_seen(meth, option):
    assert option in _scipy_compat.valid_options(meth)


def test_unknown_option_is_rejected_through_the_compat_layer():
    import numpy as np

    from learned_opt import minimize
    with pytest.raises(ValueError, match="unknown option"):
        minimize(lambda p: (p["a"] ** 2).sum(), {"a": np.ones(2)}, method="L-BFGS-B", options={"maxcorr": 3})


def test_the_solver_table_covers_exactly_the_local_methods():
    assert set(_scipy_compat.SOLVER_FUNCS) | set(_scipy_compat.TRUST_REGION) == set(LOCAL)
