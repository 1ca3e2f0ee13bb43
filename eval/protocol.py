"""The evaluation protocol: one frozen record of every rule that turns runs into verdicts.

For every task and seed:

* **Selection.** Each baseline's hyperparameters (the learning rate, on the project-wide grid
  :data:`learned_opt.inner_loop.LEARNING_RATE_GRID`) are *selected* on a selection objective:
  the final loss on a fixed subset of the task's ``inner_valid`` split (train-time noise off), or,
  for data-free tasks, the final evaluation loss of separate seeds (``seed + selection_seed_offset``)
  that are never reported.
* **Report.** Every method is *reported* on the test objective -- a fixed subset of the ``test``
  split, or the exact expected loss of a data-free (possibly noisy) task -- and on the training
  objective (a fixed subset of the ``train`` split), both with train-time noise off
  (:meth:`tasks.Task.eval_loss`).
* **Normalization** (TaskSet): per task and objective, ``n(L) = clip((L - L_best) / (L_init -
  L_best), -2, 2)``, NaN/inf -> 2; a run whose losses turn non-finite or whose final normalized
  test loss reaches the clip (2: it ended at least one improvement range above where it started)
  is counted as diverged; ``L_init`` is the mean
  initial loss over the reported seeds, ``L_best`` the lowest seed-mean loss any baseline reached
  at any recorded point of any grid setting (and L-BFGS-B's best, on tasks with an exact objective).
* **Comparison** of a method M with a tuned baseline B on the test objective, on the running
  minimum of each seed-median curve: ``L* = max(min_t B(t), L_best + band)`` (B's best test
  loss, but never below the tie band around ``L_best``: ``speedup_target="band"``; the older
  ``"baseline_best"`` drops the floor), ``t_B`` the first
  step B reaches ``L*``, ``t_M`` the first step M reaches ``L*``; speed-up ``t_B / t_M``. The floor
  matters on tasks both methods solve: without it the target is B's final float-noise level (a
  normalized 1e-6 on a quadratic), and a change of the last bits of either run flips the
  verdict (measured: the same optimizer, its update wrapped in an identity, went from a win at
  x1.29 to a tie at x0.90 on `heldout/quadratic-100000`); with it, the speed-up is the ratio of the
  times to get within the band of the best loss, a difference the band resolves. When M
  never reaches ``L*``, the speed-up is ``t_B(L_M) / T`` with ``L_M`` M's best loss and
  ``t_B(L_M)`` the step B reached it (below 1; 0 if M never improves on the initial loss). An
  optimizer identical to B scores exactly 1. Verdict, with ``w = win_speedup`` and the band
  ``tie_band · (L_init - L_best)``:

  - **win**: speed-up ≥ w and M's final test loss is not worse than B's by more than the band;
  - **tie**: otherwise, if the speed-up lies in (1/w, w) or the two final test losses differ by at
    most the band (a win on speed that ends worse than B is a tie, not a win);
  - **loss**: everything else, and every task where M diverged.

  A task is **saturated** when every method's seed-median test curve is within the band of
  ``L_best`` by ``saturation_fraction`` of the horizon (every final loss ties there; a win is a
  speed-up in reaching the band; the task is flagged so a reader can discount it).
* **Summaries** per suite and method, against each baseline: counts, win rate with a Wilson 95%
  interval, median speed-up, mean normalized final test / train loss and mean normalized area
  (the normalized test loss averaged over the run), with seeded bootstrap 95% intervals.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from learned_opt.inner_loop import LEARNING_RATE_GRID

BASELINE_NAMES = ("adam", "adam_cosine", "sgdm", "L-BFGS-B")
SPEEDUP_TARGETS = ("band", "baseline_best")


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Every rule of an evaluation (see the module docstring); ``as_dict()`` goes into results."""

    learning_rates: tuple[float, ...] = LEARNING_RATE_GRID
    baselines: tuple[str, ...] = BASELINE_NAMES
    vs: str = "adam"  # the headline baseline of summaries
    win_speedup: float = 1.1
    tie_band: float = 0.01  # fraction of L_init - L_best
    speedup_target: str = "band"  # "band": L* floored at L_best + band; "baseline_best": B's best only
    saturation_fraction: float = 0.5
    eval_points: int = 20  # records after step 0 on minibatch tasks (data-free / full batch: every step)
    dense_records_max_steps: int = 2000  # record every step on exact tasks up to this horizon
    eval_examples: int = 512  # fixed subset size of each split's evaluation batch
    selection_seed_offset: int = 10_000
    bootstrap_samples: int = 2000
    bootstrap_seed: int = 0

    def __post_init__(self):
        lrs = tuple(float(r) for r in self.learning_rates)
        if not lrs or any(not r > 0 for r in lrs):
            raise ValueError(f"protocol learning_rates must be positive numbers, got {self.learning_rates!r}")
        object.__setattr__(self, "learning_rates", lrs)
        object.__setattr__(self, "baselines", tuple(self.baselines))
        unknown = [b for b in self.baselines if b not in BASELINE_NAMES]
        if unknown:
            raise ValueError(f"protocol baselines: unknown {unknown[0]!r}; choose from {list(BASELINE_NAMES)}")
        if self.vs not in self.baselines:
            raise ValueError(f"protocol vs={self.vs!r} must be one of the baselines {list(self.baselines)}")
        if not self.win_speedup > 1:
            raise ValueError(f"protocol win_speedup must be > 1, got {self.win_speedup!r}")
        if not 0 <= self.tie_band < 1:
            raise ValueError(f"protocol tie_band must be in [0, 1), got {self.tie_band!r}")
        if self.speedup_target not in SPEEDUP_TARGETS:
            raise ValueError(f"protocol speedup_target must be one of {SPEEDUP_TARGETS}, got {self.speedup_target!r}")
        if not 0 < self.saturation_fraction <= 1:
            raise ValueError(f"protocol saturation_fraction must be in (0, 1], got {self.saturation_fraction!r}")
        for name in ("eval_points", "eval_examples", "bootstrap_samples", "dense_records_max_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"protocol {name} must be an int >= 1, got {v!r}")

    def replace(self, **changes) -> Protocol:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["learning_rates"] = list(self.learning_rates)
        d["baselines"] = list(self.baselines)
        return d

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> Protocol:
        if not d:
            return cls()
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise ValueError(f"unknown protocol key {unknown[0]!r}; known: {sorted(fields)}")
        d = dict(d)
        for k in ("learning_rates", "baselines"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


DEFAULT_PROTOCOL = Protocol()
