"""The time budget of one search, made once from ``time_budget`` (minutes) when it starts.

The trials stop taking new work at :attr:`Deadline.trials_end`, which leaves the refit its
share (:data:`RESERVE`) of the budget; the refit may run until :attr:`Deadline.refit_end`.
The loop, the trials (as :attr:`Deadline.trials_end`, a plain float in their run options,
so it travels to worker processes and Ray) and the refit all read this one object; nothing
else turns minutes into an end time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

RESERVE = 0.15  # share of a time budget the trials leave for the refit


@dataclass(frozen=True)
class Deadline:
    """When a search's trials and its refit must end (``time.time()`` values).

    ``seconds`` is the budget's length (None: no budget), ``start`` when it began counting,
    ``reserve`` the share of it kept for the refit (0 when the search does not refit).
    """

    start: float
    seconds: float | None = None
    reserve: float = 0.0

    @classmethod
    def from_budget(
        cls, minutes: float | None, *, refit: bool = False, start: float | None = None
    ) -> Deadline:
        """The deadline of a search with ``minutes`` of time budget (None or 0: none)."""
        return cls(
            start=time.time() if start is None else start,
            seconds=minutes * 60 if minutes else None,
            reserve=RESERVE if refit else 0.0,
        )

    @property
    def end(self) -> float | None:
        """When the budget ends; None without a budget."""
        return None if self.seconds is None else self.start + self.seconds

    @property
    def trials_end(self) -> float | None:
        """After this no new trial starts, and a running one stops at its epoch end."""
        if self.seconds is None:
            return None
        return self.start + self.seconds - self.reserve * self.seconds

    @property
    def refit_end(self) -> float | None:
        """The latest a refit may end: the reserve past the budget's end."""
        if self.seconds is None:
            return None
        return self.start + self.seconds + self.reserve * self.seconds

    def trials_over(self, now: float | None = None) -> bool:
        """Is the trials' share of the budget spent?"""
        end = self.trials_end
        return end is not None and (time.time() if now is None else now) > end

    def refit_seconds_left(self, now: float | None = None) -> float | None:
        """Seconds the refit has left; None without a budget."""
        end = self.refit_end
        return None if end is None else end - (time.time() if now is None else now)
