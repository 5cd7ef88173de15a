"""The learning-rate schedule of a run, over iterations or over a wall-time budget.

A run is described by its *progress* ``p`` in ``[0, 1]``: the linear warm-up is counted in
iterations, every decay (``x gamma``) happens when ``p`` reaches one of the decay fractions, and
the run ends at ``p = 1``.

- **Iteration runs** (no budget): ``p = iteration / schedule.iterations``. A milestone ``m``
  given in iterations is the fraction ``m / iterations``, so the learning rate at every
  iteration is exactly that of the classic multi-step schedule and a resume is bit-exact.
- **Budget runs** (``schedule.minutes`` or ``gaitid train --max-minutes``): ``p`` is the
  training wall time spent so far over the training time the budget leaves once the data
  loading, the embedding fit and the final validation are set aside (their cost is measured
  with one timed forward pass before the first iteration; :meth:`RunSchedule.plan`). The run
  therefore always reaches its decays, fits its embedding head, validates and writes its last
  checkpoint inside the budget, whatever the machine's speed. ``schedule.iterations`` stays an
  upper bound. The training seconds spent and the planned training time are part of the
  checkpoint, so ``--resume`` continues the same schedule where it stopped (its learning rates
  follow the clock, so a resumed budget run is not bit-identical to an uninterrupted one).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import torch

from gaitid.errors import GaitidError
from gaitid.training.config import ScheduleConfig

logger = logging.getLogger(__name__)

#: Set aside on top of the measured fit and validation cost (checkpoint writes, plots, the
#: loader's first batch): this many seconds, or this share of a short budget; the measured
#: cost itself is padded by the factor.
_RESERVE_FLOOR_S = 20.0
_RESERVE_FLOOR_SHARE = 0.10
_RESERVE_FACTOR = 1.25


@dataclass(frozen=True)
class BudgetPlan:
    """How a wall-time budget is split, fixed once at the start of a run (kept for resume)."""

    budget_s: float  # the whole run
    setup_s: float  # spent before the first iteration (data loading, model build)
    reserve_s: float  # set aside for the embedding fit and the final validation
    train_s: float  # what is left for the iterations

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


class ScheduleError(GaitidError, ValueError):
    """A budget too small to train at all once fitting and validation are set aside."""


class RunSchedule:
    """Learning-rate factor and end of a run; its state is saved with the checkpoint."""

    def __init__(self, schedule: ScheduleConfig, base_lrs: list[float]) -> None:
        self.config = schedule
        self.base_lrs = list(base_lrs)
        self.decay_fractions = schedule.decay_fractions()
        self.plan_: BudgetPlan | None = None
        self.trained_s = 0.0  # wall seconds spent in training iterations (budget runs)
        self.step_s = 0.0  # the last iteration's wall seconds

    @property
    def budgeted(self) -> bool:
        return self.config.minutes is not None

    # -- planning ---------------------------------------------------------------------------
    def plan(self, setup_s: float, reserve_work_s: float) -> BudgetPlan:
        """Fix the training time of a budget run: the budget minus what was spent before the
        first iteration and minus the (padded) measured cost of fitting and validating."""
        assert self.config.minutes is not None
        budget = 60.0 * self.config.minutes
        floor = min(_RESERVE_FLOOR_S, _RESERVE_FLOOR_SHARE * budget)
        reserve = _RESERVE_FACTOR * reserve_work_s + floor
        train = budget - setup_s - reserve
        if train <= 0:
            raise ScheduleError(
                f"a budget of {self.config.minutes:g} min leaves no training time: "
                f"{setup_s:.0f} s were spent loading and {reserve:.0f} s are needed to fit the "
                "embedding and validate; raise the budget or lower embedding.fit_walks/"
                "embedding.fit_frames"
            )
        self.plan_ = BudgetPlan(budget, setup_s, reserve, train)
        logger.info(
            "budget %.1f min: %.0f s setup, %.0f s reserved for fit + validation, "
            "%.0f s of training",
            self.config.minutes,
            setup_s,
            reserve,
            train,
        )
        return self.plan_

    # -- progress ---------------------------------------------------------------------------
    def progress(self, iteration: int) -> float:
        """Fraction of the run done after ``iteration`` iterations (and ``trained_s``)."""
        by_iterations = iteration / self.config.iterations
        if self.plan_ is None:
            return by_iterations
        return max(by_iterations, self.trained_s / self.plan_.train_s)

    def factor(self, iteration: int) -> float:
        """Learning-rate factor for the iteration that follows ``iteration`` done ones."""
        p = self.progress(iteration)
        factor = self.config.gamma ** sum(1 for f in self.decay_fractions if p >= f)
        warmup = self.config.warmup_iterations
        if warmup and iteration < warmup:
            factor *= (iteration + 1) / warmup
        return factor

    def apply(self, optimizer: torch.optim.Optimizer, iteration: int) -> float:
        """Set every parameter group's learning rate for the next iteration; return group 0's."""
        factor = self.factor(iteration)
        for group, base in zip(optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor
        return float(optimizer.param_groups[0]["lr"])

    def add_time(self, seconds: float) -> None:
        self.trained_s += seconds
        self.step_s = seconds

    def done(self, iteration: int) -> bool:
        """Whether the run is over after ``iteration`` iterations.

        A budget run also stops when one more step would end further past the planned
        training time than stopping now ends before it (so it overshoots by at most half a
        step, not a whole one: a step is seconds on a CPU).
        """
        if self.progress(iteration) >= 1.0:
            return True
        if self.plan_ is None:
            return False
        return self.trained_s + self.step_s / 2 >= self.plan_.train_s

    # -- checkpointing ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "trained_s": self.trained_s,
            "step_s": self.step_s,  # `done` depends on it: a finished run stays finished
            "plan": self.plan_.as_dict() if self.plan_ is not None else None,
            "base_lrs": list(self.base_lrs),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.trained_s = float(state.get("trained_s", 0.0))
        self.step_s = float(state.get("step_s", 0.0))
        plan = state.get("plan")
        self.plan_ = BudgetPlan(**plan) if plan else None
        if "base_lrs" in state:
            self.base_lrs = [float(v) for v in state["base_lrs"]]
