"""Classic 2-D test functions as data-free tasks, ready for optimizer-path plots.

Parameters are ``{"xy": f[2]}``. Each function carries its known global minimizers, minimum
value, a default start point and a plotting window; ``task.value(x, y)`` evaluates it on NumPy /
JAX arrays of any broadcastable shape (contours), and ``task.path_xy(params_list)`` turns a list
of parameter dicts into an ``[n, 2]`` array.

=================  ==========================================================  ==============
name               f(x, y)                                                     minimum
=================  ==========================================================  ==============
rosenbrock         (1-x)^2 + 100 (y-x^2)^2                                     0 at (1, 1)
beale              (1.5-x+xy)^2 + (2.25-x+xy^2)^2 + (2.625-x+xy^3)^2           0 at (3, 0.5)
booth              (x+2y-7)^2 + (2x+y-5)^2                                     0 at (1, 3)
ackley             -20 exp(-0.2 sqrt((x^2+y^2)/2))                             0 at (0, 0)
                   - exp((cos 2 pi x + cos 2 pi y)/2) + e + 20
himmelblau         (x^2+y-11)^2 + (x+y^2-7)^2                                  0 at 4 points
styblinski_tang    1/2 sum_i (x_i^4 - 16 x_i^2 + 5 x_i)                        -78.33233 at
                                                                               (-2.903534, -2.903534)
rastrigin          20 + sum_i (x_i^2 - 10 cos 2 pi x_i)                        0 at (0, 0)
matyas             0.26 (x^2+y^2) - 0.48 x y                                   0 at (0, 0)
three_hump_camel   2x^2 - 1.05 x^4 + x^6/6 + x y + y^2                         0 at (0, 0)
flower             a sqrt(x^2+y^2) + b sin(c atan2(y, x)),  a=b=1, c=4         inf -1 (r -> 0)
=================  ==========================================================  ==============

The flower function (seed 002) approaches its infimum ``-1`` as ``r -> 0`` along the rays
``sin(4 theta) = -1`` but is undefined at the origin; ``minimizers`` is empty and ``min_value``
is the infimum. ``sqrt`` and ``atan2`` at the origin use the double-``where`` trick so values and
gradients stay finite there (Ackley's gradient at its minimizer is 0).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tasks.common import ConfiguredTask, check_choice, check_float, default_float


def _safe_norm(x, y):
    r2 = x * x + y * y
    pos = r2 > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, r2, 1.0)), 0.0)


def _rosenbrock(x, y):
    return (1.0 - x) ** 2 + 100.0 * (y - x * x) ** 2


def _beale(x, y):
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y ** 2) ** 2 + (2.625 - x + x * y ** 3) ** 2


def _booth(x, y):
    return (x + 2 * y - 7) ** 2 + (2 * x + y - 5) ** 2


def _ackley(x, y):
    r = _safe_norm(x, y)
    return (-20.0 * jnp.exp(-0.2 * r / math.sqrt(2.0))
            - jnp.exp(0.5 * (jnp.cos(2 * jnp.pi * x) + jnp.cos(2 * jnp.pi * y))) + math.e + 20.0)


def _himmelblau(x, y):
    return (x * x + y - 11) ** 2 + (x + y * y - 7) ** 2


def _styblinski_tang(x, y):
    return 0.5 * ((x ** 4 - 16 * x ** 2 + 5 * x) + (y ** 4 - 16 * y ** 2 + 5 * y))


def _rastrigin(x, y):
    return 20.0 + (x * x - 10 * jnp.cos(2 * jnp.pi * x)) + (y * y - 10 * jnp.cos(2 * jnp.pi * y))


def _matyas(x, y):
    return 0.26 * (x * x + y * y) - 0.48 * x * y


def _three_hump_camel(x, y):
    return 2 * x ** 2 - 1.05 * x ** 4 + x ** 6 / 6.0 + x * y + y ** 2


def _flower(x, y, a=1.0, b=1.0, c=4.0):
    r = _safe_norm(x, y)
    pos = (x * x + y * y) > 0
    theta = jnp.arctan2(jnp.where(pos, y, 0.0), jnp.where(pos, x, 1.0))
    return a * r + b * jnp.sin(c * theta)


# Styblinski-Tang: the 1-D factor's minimizer solves 4 x^3 - 32 x + 5 = 0.
_ST_X = -2.9035340276126953
_ST_MIN = float(2 * 0.5 * (_ST_X ** 4 - 16 * _ST_X ** 2 + 5 * _ST_X))

# name: (fn, minimizers, min_value, start, (xmin, xmax), (ymin, ymax))
FUNCTIONS_2D: dict[str, tuple] = {
    "rosenbrock": (_rosenbrock, [(1.0, 1.0)], 0.0, (-1.2, 1.0), (-2.0, 2.0), (-1.0, 3.0)),
    "beale": (_beale, [(3.0, 0.5)], 0.0, (-1.0, 1.5), (-4.5, 4.5), (-4.5, 4.5)),
    "booth": (_booth, [(1.0, 3.0)], 0.0, (-6.0, 6.0), (-10.0, 10.0), (-10.0, 10.0)),
    "ackley": (_ackley, [(0.0, 0.0)], 0.0, (3.3, 2.7), (-5.0, 5.0), (-5.0, 5.0)),
    "himmelblau": (_himmelblau,
                   [(3.0, 2.0), (-2.805118086952745, 3.131312518250573),
                    (-3.779310253377747, -3.283185991286170),
                    (3.584428340330492, -1.848126526964404)],
                   0.0, (0.0, 0.0), (-5.0, 5.0), (-5.0, 5.0)),
    "styblinski_tang": (_styblinski_tang, [(_ST_X, _ST_X)], _ST_MIN, (0.0, 0.0),
                        (-5.0, 5.0), (-5.0, 5.0)),
    "rastrigin": (_rastrigin, [(0.0, 0.0)], 0.0, (3.2, -2.8), (-5.12, 5.12), (-5.12, 5.12)),
    "matyas": (_matyas, [(0.0, 0.0)], 0.0, (8.0, -6.0), (-10.0, 10.0), (-10.0, 10.0)),
    "three_hump_camel": (_three_hump_camel, [(0.0, 0.0)], 0.0, (2.0, -1.5), (-5.0, 5.0),
                         (-5.0, 5.0)),
    "flower": (_flower, [], -1.0, (20.0, 20.0), (-3.0, 3.0), (-3.0, 3.0)),
}


class Function2DTask(ConfiguredTask):
    """A named 2-D test function; ``init`` returns the start point (+ optional Gaussian jitter).

    Attributes: ``minimizers`` (list of (x, y)), ``min_value`` (global minimum, the infimum for
    ``flower``), ``start`` (x0, y0), ``x_range`` / ``y_range`` (plotting window).
    """

    def __init__(self, function: str = "rosenbrock", start: Optional[Sequence[float]] = None,
                 init_noise: float = 0.0, name: Optional[str] = None):
        function = check_choice("function", function, tuple(FUNCTIONS_2D))
        fn, minimizers, min_value, default_start, xr, yr = FUNCTIONS_2D[function]
        if start is None:
            start = default_start
        if not isinstance(start, (list, tuple)) or len(start) != 2:
            raise ValueError(f"start must be a pair (x0, y0), got {start!r}")
        start = (check_float("start[0]", start[0]), check_float("start[1]", start[1]))
        init_noise = check_float("init_noise", init_noise, low=0.0)
        name = function if name is None else name
        self._set_config(function=function, start=list(start), init_noise=init_noise, name=name)
        self.name = name
        self.function = function
        self._fn: Callable = fn
        self.minimizers = [tuple(m) for m in minimizers]
        self.min_value = float(min_value)
        self.start = start
        self.x_range, self.y_range = tuple(xr), tuple(yr)
        self.init_noise = init_noise
        self.datasets = None

    def value(self, x: Any, y: Any) -> jax.Array:
        """``f(x, y)`` elementwise on broadcastable arrays (for contour plots)."""
        return self._fn(jnp.asarray(x), jnp.asarray(y))

    def init(self, key: jax.Array) -> dict:
        xy = jnp.asarray(self.start, default_float())
        if self.init_noise > 0:
            xy = xy + self.init_noise * jax.random.normal(key, (2,), xy.dtype)
        return {"xy": xy}

    def loss(self, params: dict, key: jax.Array | None = None, batch: Any = None) -> jax.Array:
        xy = params["xy"]
        return self._fn(xy[0], xy[1])

    @staticmethod
    def path_xy(params_list: Sequence[dict]) -> np.ndarray:
        """``[n, 2]`` array of the points of an optimizer path given as parameter dicts."""
        return np.stack([np.asarray(p["xy"], dtype=np.float64) for p in params_list])

    def grid(self, num: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(X, Y, Z)`` meshgrid of the plotting window for ``contour(X, Y, Z)``."""
        xs = np.linspace(self.x_range[0], self.x_range[1], num)
        ys = np.linspace(self.y_range[0], self.y_range[1], num)
        X, Y = np.meshgrid(xs, ys)
        Z = np.asarray(jax.jit(self._fn)(X, Y))
        return X, Y, Z


def function_names() -> list[str]:
    """Names of the available 2-D test functions."""
    return list(FUNCTIONS_2D)
