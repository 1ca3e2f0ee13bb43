"""``learned_opt.minimize`` is the function although ``learned_opt/minimize/`` is a package of the
same name, whatever is imported first (fresh interpreters: import order is the point)."""
import subprocess
import sys

import pytest


@pytest.mark.parametrize("first", ["import learned_opt.minimize.methods", "import learned_opt.dict_api",
                                   "import learned_opt", "from learned_opt.minimize import minimize"])
def test_minimize_is_the_function_whatever_is_imported_first(first):
    code = (f"{first}\n"
            "import learned_opt\n"
            "from learned_opt import minimize, OptimizeResult\n"
            "from learned_opt.minimize import minimize as m2\n"
            "from learned_opt.dict_api import minimize as m3\n"
            "assert minimize is m2 is m3 is learned_opt.minimize, minimize\n"
            "assert OptimizeResult.__module__ == 'learned_opt.minimize.result'\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
