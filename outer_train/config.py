"""Experiment configuration: one plain dataclass, JSON/YAML files, ``key=value`` overrides, presets.

``TrainConfig`` holds every knob of a meta-training run; nothing is read from globals. A config is
built from a preset (:func:`presets`), a JSON/YAML file (:func:`load_config`) or a dict
(:meth:`TrainConfig.from_dict`), then overridden field by field (:func:`apply_overrides`, dotted
keys reach into the ``*_kwargs`` dicts: ``task_kwargs.dim=20``). Every field is validated in
``__post_init__``; a bad key or value raises ``ValueError``/``TypeError`` naming it.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping

from outer_train.estimators import ESTIMATORS, REMAT_CHOICES
from outer_train.unroll import META_WEIGHTINGS

TASK_KINDS = ("quadratic", "image_mlp", "taskset_mixture")


@dataclasses.dataclass
class TrainConfig:
    """A meta-training experiment.

    Task: ``task`` is ``"quadratic"`` (:class:`tasks.families.QuadraticFamily`), ``"image_mlp"``
    (:class:`tasks.families.ImageMLPFamily`) or ``"taskset_mixture"`` (``mixture_size`` fixed
    tasks drawn by ``seed`` from the named taskset ``taskset``, one vmapped group of
    ``num_tasks`` inner problems per task, gradients averaged); ``task_kwargs`` go to the family's
    constructor. Augmentation (taskset mixtures): ``reparam`` = ``"global"`` or ``"tensor"``
    reparameterizes every freshly sampled inner problem's weights, ``w = θ / s`` with ``s``
    log-uniform in ``reparam_range`` (:class:`tasks.augment.ReparamFamily`): the function and its
    loss values are unchanged, so the taskset normalization still applies, while the optimizer
    must infer the step size from the parameters' scale.

    Estimator: ``estimator`` (one of es, pes, tbptt, smoothed_rp, full_es, full_grad, hybrid),
    ``num_tasks`` N, ``unroll_length`` K inner steps per outer step, ``sigma`` the perturbation
    scale, truncation ``trunc_schedule`` (constant | log_uniform) of ``trunc_length`` updates
    (``min_trunc_length`` for log_uniform), curriculum from ``curriculum_start`` over
    ``curriculum_steps`` outer steps, ``random_offsets``; meta-loss ``meta_loss``
    (train | outer_valid), ``normalizer`` (initial | none | taskset), clipped to
    ``meta_loss_clip``. ``task_grad_clip`` r ≥ 1 clips every task's meta-gradient estimate (every
    member of a taskset mixture, every one of the ``num_tasks`` rows) to r times the median task's
    norm before they are averaged, so one task with an outsized estimate cannot set the step's direction
    (0 = off; :func:`outer_train.estimators.clip_to_median_norm`). ``task_grad_equalize`` rescales
    every task's estimate to exactly that norm (r = 1 when ``task_grad_clip`` is 0), short ones
    included: every task gets an equal vote on the step's direction, as the evaluation counts every
    task's win, tie or loss equally.

    Backprop memory/speed: ``remat`` is the ``jax.checkpoint`` policy of each inner step when the
    estimator differentiates through the unroll (tbptt, smoothed_rp, full_grad, hybrid): ``"auto"``
    (default), ``"none"``, ``"full"`` or ``"dots"`` (see :data:`outer_train.unroll.REMAT_POLICIES`
    and :attr:`outer_train.estimators.GradientEstimator.remat_policy`). It changes speed and memory,
    never the gradient (up to float rounding).

    Meta-loss weighting ``meta_weighting`` (uniform | linear: ``ℓ_t`` weighted by ``2 t/T`` |
    cubic: by ``4 (t/T)³``; see :mod:`outer_train.unroll`).

    Outer loop: ``outer_optimizer`` (adam | adamw with ``outer_weight_decay`` | sgd) at ``outer_lr``
    — constant, or with ``outer_lr_schedule="warmup_cosine"`` a linear warmup over
    ``outer_warmup_steps`` then a cosine decay to ``outer_lr_final`` at ``outer_decay_steps`` (default
    ``outer_steps``; constant after it, so a finished run can be extended without re-stretching its
    schedule) — global-norm clipping at
    ``grad_clip`` (0 disables), ``outer_steps`` steps, starting from θ = ``optimizer.init(key)``
    or, with ``init_theta``, from the θ of that checkpoint (a ``.lopt`` file saved for the same
    optimizer configuration: fine-tuning a pretrained optimizer); ``checkpoint_every`` outer steps a full
    resume checkpoint and a θ file are written to ``out``; ``time_budget`` minutes stops early
    (after a checkpoint). ``theta_average`` β in (0, 1) also keeps the bias-corrected exponential
    moving average θ̄ of θ over the outer steps (:mod:`outer_train.theta_average`; 0 = off) and
    writes it beside every θ file as ``theta_average_<step>.lopt``.

    Devices: ``devices`` is ``"auto"`` (shard the task axis over all devices — every process's
    in a multi-process run — when there is more than one) or an int (exactly that many; 1 = no
    sharding); ``num_tasks`` must be divisible by the device count. Results do not depend on it
    beyond float rounding (see :mod:`outer_train.distributed`).
    """

    name: str = "custom"
    task: str = "quadratic"
    task_kwargs: dict = dataclasses.field(default_factory=dict)
    optimizer: str = "mlp"
    optimizer_kwargs: dict = dataclasses.field(default_factory=dict)
    estimator: str = "pes"
    sigma: float = 0.01
    num_tasks: int = 8
    unroll_length: int = 20
    trunc_schedule: str = "constant"
    trunc_length: int = 200
    min_trunc_length: int | None = None
    curriculum_start: int | None = None
    curriculum_steps: int = 0
    random_offsets: bool = True
    meta_loss: str = "train"
    normalizer: str = "initial"
    meta_loss_clip: tuple = (-2.0, 2.0)
    taskset: str = "train"
    mixture_size: int = 4
    reparam: str = "none"
    reparam_range: tuple = (0.1, 10.0)
    meta_weighting: str = "uniform"
    task_grad_clip: float = 0.0
    task_grad_equalize: bool = False
    remat: str = "auto"
    outer_optimizer: str = "adam"
    outer_lr: float = 1e-3
    outer_lr_schedule: str = "constant"
    outer_lr_final: float | None = None
    outer_warmup_steps: int = 0
    outer_decay_steps: int | None = None
    outer_weight_decay: float = 1e-4
    grad_clip: float = 1.0
    theta_average: float = 0.0
    outer_steps: int = 1000
    init_theta: str | None = None
    seed: int = 0
    checkpoint_every: int = 100
    time_budget: float | None = None
    out: str | None = None
    progress: bool = True
    tensorboard: bool = True
    devices: Any = "auto"

    def __post_init__(self):
        self.validate()

    # ------------------------------------------------------------------------- validation
    def validate(self) -> None:
        def pos_int(name, minimum=1, allow_none=False):
            v = getattr(self, name)
            if v is None and allow_none:
                return
            if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                raise ValueError(f"config key {name!r} must be an int >= {minimum}, got {v!r}")

        def number(name, positive=False, allow_none=False):
            v = getattr(self, name)
            if v is None and allow_none:
                return
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError(f"config key {name!r} must be a number, got {v!r}")
            setattr(self, name, float(v))
            if positive and not v > 0:
                raise ValueError(f"config key {name!r} must be > 0, got {v!r}")
            if not positive and v < 0:
                raise ValueError(f"config key {name!r} must be >= 0, got {v!r}")

        def choice(name, options):
            v = getattr(self, name)
            if v not in options:
                raise ValueError(f"config key {name!r} must be one of {list(options)}, got {v!r}")

        for name in ("name", "optimizer", "taskset"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"config key {name!r} must be a string, got {getattr(self, name)!r}")
        choice("task", TASK_KINDS)
        choice("estimator", ESTIMATORS)
        choice("trunc_schedule", ("constant", "log_uniform"))
        choice("meta_loss", ("train", "outer_valid"))
        choice("normalizer", ("initial", "none", "taskset"))
        choice("outer_optimizer", ("adam", "adamw", "sgd"))
        choice("outer_lr_schedule", ("constant", "warmup_cosine"))
        choice("meta_weighting", META_WEIGHTINGS)
        choice("remat", REMAT_CHOICES)
        choice("reparam", ("none", "global", "tensor"))
        rr = self.reparam_range
        if not isinstance(rr, (list, tuple)) or len(rr) != 2 or \
                not all(isinstance(c, (int, float)) and not isinstance(c, bool) and c > 0 for c in rr) or \
                not rr[0] <= rr[1]:
            raise ValueError(f"config key 'reparam_range' must be [low, high] with 0 < low <= high, got {rr!r}")
        self.reparam_range = (float(rr[0]), float(rr[1]))
        for name in ("task_kwargs", "optimizer_kwargs"):
            if not isinstance(getattr(self, name), dict):
                raise TypeError(f"config key {name!r} must be a dict, got {getattr(self, name)!r}")
        for name in ("num_tasks", "unroll_length", "trunc_length", "mixture_size", "outer_steps",
                     "checkpoint_every"):
            pos_int(name)
        pos_int("min_trunc_length", allow_none=True)
        pos_int("curriculum_start", allow_none=True)
        pos_int("curriculum_steps", minimum=0)
        pos_int("seed", minimum=0)
        number("sigma", positive=True)
        number("outer_lr", positive=True)
        number("outer_lr_final", allow_none=True)
        number("outer_weight_decay")
        pos_int("outer_warmup_steps", minimum=0)
        pos_int("outer_decay_steps", allow_none=True)
        number("grad_clip")
        number("task_grad_clip")
        number("theta_average")
        if self.theta_average:
            from outer_train.theta_average import check_decay
            check_decay(self.theta_average, "config key 'theta_average'")
        if 0 < self.task_grad_clip < 1:
            raise ValueError(f"config key 'task_grad_clip' must be 0 (off) or >= 1, got {self.task_grad_clip!r}")
        number("time_budget", positive=True, allow_none=True)
        if not (self.devices == "auto" or (isinstance(self.devices, int) and not isinstance(self.devices, bool)
                                           and self.devices >= 1)):
            raise ValueError(f"config key 'devices' must be 'auto' or an int >= 1, got {self.devices!r}")
        for name in ("random_offsets", "progress", "tensorboard", "task_grad_equalize"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"config key {name!r} must be true or false, got {getattr(self, name)!r}")
        clip = self.meta_loss_clip
        if not isinstance(clip, (list, tuple)) or len(clip) != 2 or \
                not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in clip) or \
                not clip[0] < clip[1]:
            raise ValueError(f"config key 'meta_loss_clip' must be [low, high] with low < high, got {clip!r}")
        self.meta_loss_clip = (float(clip[0]), float(clip[1]))
        if self.out is not None and not isinstance(self.out, str):
            raise TypeError(f"config key 'out' must be a path string, got {self.out!r}")
        if self.init_theta is not None and not isinstance(self.init_theta, str):
            raise TypeError(f"config key 'init_theta' must be a path string, got {self.init_theta!r}")
        if self.normalizer == "taskset" and self.task != "taskset_mixture":
            raise ValueError("config key 'normalizer' = 'taskset' requires task = 'taskset_mixture'")
        if self.trunc_schedule == "log_uniform" and self.min_trunc_length is not None \
                and self.min_trunc_length > self.trunc_length:
            raise ValueError("config key 'min_trunc_length' must be <= 'trunc_length'")

    # ------------------------------------------------------------------------ conversions
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["meta_loss_clip"] = list(self.meta_loss_clip)
        d["reparam_range"] = list(self.reparam_range)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        if not isinstance(data, Mapping):
            raise TypeError(f"a config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config key(s) {unknown}; known keys: {sorted(known)}")
        return cls(**dict(data))

    def replace(self, **changes: Any) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})


# ---------------------------------------------------------------------------------- presets
# the recipe of issue 16 (presets scheduled_pool and scheduled_hypergrad)
_SCHEDULED_POOL: dict[str, Any] = dict(
    task="taskset_mixture", taskset="train_pool", mixture_size=48, normalizer="taskset",
    optimizer="scheduled_adam",
    optimizer_kwargs={"learning_rate": 0.01, "max_log_step": 6.0, "max_correction": 1.0, "trust_features": True},
    estimator="pes", sigma=0.01, num_tasks=1, unroll_length=20, trunc_schedule="log_uniform",
    min_trunc_length=50, trunc_length=500, meta_weighting="linear", reparam="global",
    reparam_range=(0.2, 5.0), outer_optimizer="adamw", outer_lr=3e-3, outer_lr_schedule="warmup_cosine",
    outer_lr_final=1e-3, outer_warmup_steps=100, grad_clip=1.0, outer_steps=5000, checkpoint_every=25)

_PRESETS: dict[str, tuple[str, dict]] = {
    "quadratic": (
        "per-parameter MLP optimizer on 10-dim random quadratics (QuadraticFamily), PES",
        dict(task="quadratic", task_kwargs={"dim": 10}, optimizer="mlp", estimator="pes",
             num_tasks=8, unroll_length=20, trunc_length=200, outer_lr=1e-3, outer_steps=2000),
    ),
    "quadratic_sgd": (
        "learnable-SGD (θ = log lr) on 10-dim random quadratics; tiny, for smoke tests",
        dict(task="quadratic", task_kwargs={"dim": 10}, optimizer="sgd",
             optimizer_kwargs={"learning_rate": 0.01}, estimator="pes", sigma=0.05, num_tasks=8,
             unroll_length=10, trunc_length=50, outer_lr=0.05, outer_steps=200,
             checkpoint_every=20),
    ),
    "image_mlp": (
        "MLP optimizer on MLP classifiers 8x8 digits -> 32 -> 10, batch 128 (ImageMLPFamily), PES",
        dict(task="image_mlp", task_kwargs={"dataset": "digits", "image_size": 8, "hidden_sizes": [32],
                                            "batch_size": 128},
             optimizer="mlp", estimator="pes", num_tasks=8, unroll_length=20, trunc_length=200,
             outer_lr=1e-3, outer_steps=2000),
    ),
    "taskset_mixture": (
        "MLP optimizer on a mixture of fixed TaskSet tasks (taskset 'train'), normalized losses, PES",
        dict(task="taskset_mixture", taskset="train", mixture_size=4, normalizer="taskset",
             optimizer="mlp", estimator="pes", num_tasks=4, unroll_length=20, trunc_length=200,
             outer_lr=1e-3, outer_steps=2000),
    ),
    "scheduled_pool": (
        "Adam with a learned schedule (scheduled_adam, trust-ratio inputs) on the 48-task train_pool: "
        "log-uniform trajectories 50-500, final-loss weighted normalized meta-loss, weight "
        "reparameterization, PES, AdamW warmup-cosine 3e-3 -> 1e-3 (the recipe of issue 16)",
        _SCHEDULED_POOL,
    ),
    "scheduled_hypergrad": (
        "scheduled_pool with the step controller and its nominal increment (hypergradient_gain 0.1, "
        "selected on train_pool at the initial θ): every tensor's step size adapts from the first "
        "step and meta-training refines it; 3,500 outer steps (the default recipe of issue 16)",
        dict(_SCHEDULED_POOL, optimizer_kwargs={"learning_rate": 0.01, "max_log_step": 6.0, "max_correction": 1.0,
                                                "trust_features": True, "step_controller": True,
                                                "hypergradient_gain": 0.1},
             outer_steps=3500),
    ),
}


def presets() -> dict[str, str]:
    """Preset names -> one-line descriptions."""
    return {name: desc for name, (desc, _) in _PRESETS.items()}


def preset(name: str, **overrides: Any) -> TrainConfig:
    """The preset's config (with ``overrides`` applied)."""
    if name not in _PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {sorted(_PRESETS)}")
    return TrainConfig.from_dict({**_PRESETS[name][1], "name": name, **overrides})


# ------------------------------------------------------------------------------ files, overrides
def load_config(path_or_preset: str) -> TrainConfig:
    """A config from a JSON/YAML file (by extension; else JSON, then YAML) or a preset name."""
    if path_or_preset in _PRESETS and not os.path.exists(path_or_preset):
        return preset(path_or_preset)
    if not os.path.exists(path_or_preset):
        raise ValueError(f"config {path_or_preset!r} is neither a file nor a preset {sorted(_PRESETS)}")
    with open(path_or_preset, encoding="utf-8") as f:
        text = f.read()
    if path_or_preset.endswith((".yaml", ".yml")):
        import yaml
        data = yaml.safe_load(text)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            import yaml
            data = yaml.safe_load(text)
    if isinstance(data, Mapping) and "preset" in data:
        data = dict(data)
        base = preset(data.pop("preset")).to_dict()
        for k in ("task_kwargs", "optimizer_kwargs"):
            if k in data and isinstance(data[k], Mapping):
                data[k] = {**base[k], **data[k]}
        data = {**base, **data}
    return TrainConfig.from_dict(data)


def parse_value(text: str) -> Any:
    """``key=value`` value: JSON (numbers, true/false, null, lists, dicts), else YAML, else text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        import yaml
        value = yaml.safe_load(text)
        if value is not None or text.strip().lower() in ("null", "~", "none"):
            return value
    except Exception:  # noqa: BLE001 - anything unparsable is a plain string
        pass
    return text


def apply_overrides(config: TrainConfig, overrides: list[str] | Mapping[str, Any]) -> TrainConfig:
    """Apply ``["key=value", "task_kwargs.dim=20", ...]`` (or a dict) to a config."""
    data = config.to_dict()
    items = overrides.items() if isinstance(overrides, Mapping) else None
    if items is None:
        parsed = []
        for item in overrides:
            if "=" not in item:
                raise ValueError(f"override {item!r} must look like key=value")
            key, text = item.split("=", 1)
            parsed.append((key.strip(), parse_value(text)))
        items = parsed
    for key, value in items:
        head, _, rest = key.partition(".")
        if head not in data:
            raise ValueError(f"unknown config key {head!r} in override {key!r}")
        if rest:
            if not isinstance(data[head], dict):
                raise ValueError(f"config key {head!r} is not a dict; cannot set {key!r}")
            data[head] = {**data[head], rest: value}
        else:
            data[head] = value
    return TrainConfig.from_dict(data)
