"""Compatibility re-exports of the learned optimizers' building blocks, which live by concept in

* :mod:`learned_opt.flat_layout` — the flat vector of all parameters and per-tensor reductions;
* :mod:`learned_opt.feature_math` — moving averages, time / gradient / loss features, output rules;
* :mod:`learned_opt.networks` — the dense network and its row-chunked per-parameter application;
* :mod:`learned_opt.validation` — argument checks;
* :mod:`learned_opt.per_param` — the per-parameter optimizer core that combines them.
"""
from __future__ import annotations

from learned_opt.feature_math import (
    DEFAULT_TIMESCALES,
    LossStats,
    direction_magnitude_step,
    ema,
    gradient_features,
    init_loss_stats,
    loss_features,
    num_time_features,
    param_gradient_features,
    safe_rsqrt,
    segment_rms_scales,
    time_features,
    update_loss_stats,
    update_moments,
)
from learned_opt.flat_layout import (
    VAR_REL_FLOOR,
    FlatLayout,
    check_same_structure,
    flatten,
    layout_of,
    pad_rows,
    segment_broadcast,
    segment_mean,
    segment_sum,
    segment_variance,
    unflatten,
)
from learned_opt.networks import DEFAULT_ROW_CHUNK, mlp_apply, mlp_init, per_row_mlp
from learned_opt.validation import (
    check_floats_in,
    check_num_steps,
    check_positive,
    check_positive_ints,
    check_theta,
    take_loss,
)

__all__ = [
    "DEFAULT_ROW_CHUNK", "DEFAULT_TIMESCALES", "VAR_REL_FLOOR", "FlatLayout", "LossStats", "check_floats_in",
    "check_num_steps", "check_positive", "check_positive_ints", "check_same_structure", "check_theta",
    "direction_magnitude_step", "ema", "flatten", "gradient_features", "init_loss_stats", "layout_of",
    "loss_features", "mlp_apply", "mlp_init", "num_time_features", "pad_rows", "param_gradient_features",
    "per_row_mlp", "safe_rsqrt", "segment_broadcast", "segment_mean", "segment_rms_scales", "segment_sum",
    "segment_variance", "take_loss", "time_features", "unflatten", "update_loss_stats", "update_moments",
]
