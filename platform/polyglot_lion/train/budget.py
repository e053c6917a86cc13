"""``train.max_minutes``: a wall-time budget for the training steps, so that a slower machine trains fewer steps
instead of taking longer.

The schedule's progress is the larger of steps done / ``train.max_steps`` and time spent / the budget: warm-up and
cosine decay run on whichever ends first, and the step at which the budget is spent is the run's last (it is
checkpointed and evaluated like the last of ``max_steps``). The clock is read at log steps only, the same steps on
every rank, and rank 0's reading is the one all ranks use, so every rank has the same learning rate and stops at the
same step. The time spent is carried in the checkpoint's state: a resumed run continues its budget.
"""

from __future__ import annotations

import time

import torch


class TimeBudget:
    def __init__(self, max_minutes: float, spent_s: float = 0.0, world: int = 1, group=None):
        self.budget_s = max(0.0, max_minutes) * 60.0
        self.spent_before, self.t0 = float(spent_s), time.time()
        self.world, self.group = world, group
        self.fraction = self.spent_before / self.budget_s if self.budget_s else 0.0  # as of the last reading
        self.done = bool(self.budget_s) and self.fraction >= 1.0

    def spent_s(self) -> float:
        """Seconds of the budget spent, this process's clock (resumed runs: with the time before)."""
        return self.spent_before + time.time() - self.t0

    def progress(self) -> float:
        """The time fraction of the budget as of the last reading (0 without a budget): the schedule's input."""
        return self.fraction

    def out_of_time(self, step: int, every: int) -> bool:
        """At every ``every``-th step (a collective on several ranks): read the clock; True once it is spent."""
        if not self.budget_s or step % every:
            return self.done
        spent = self.spent_s()
        if self.world > 1:  # rank 0's clock for all ranks: the same learning rate and the same last step
            t = torch.tensor([spent], dtype=torch.float64)
            torch.distributed.broadcast(t, src=0, group=self.group)
            spent = float(t.item())
        self.fraction = spent / self.budget_s
        self.done = self.fraction >= 1.0
        return self.done
