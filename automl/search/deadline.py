"""The time budget of one search, made once from ``time_budget`` (minutes) when it starts.

The trials stop taking new work at :attr:`Deadline.trials_end`, which leaves the refit its
share (:data:`RESERVE`) of the budget; the refit may run until :attr:`Deadline.refit_end`.
On a large data set (one with a fidelity ladder, :mod:`automl.fidelity`) the trials also
leave the closing steps their time (:class:`FinishEstimate`: the ensemble's selection and
test scoring, from the predict speed the trials measured), so the search returns within
its budget; on small data the closing steps take seconds and come on top, as before.
The loop, the trials (as :attr:`Deadline.trials_end`, a plain float in their run options,
so it travels to worker processes and Ray) and the refit all read this one object; nothing
else turns minutes into an end time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

RESERVE = 0.15  # share of a time budget the trials leave for the refit
# The closing steps on a large data set (see FinishEstimate).
PRIOR_IMAGES_PER_S = 100.0  # predict speed before a trial measured one (a CPU, low)
PER_MEMBER_S = 5.0  # loading a member's model file, its first predict's tracing
FIXED_S = 10.0  # the reports and the best model logged to MLflow
MAX_FINISH = 0.5  # the most of a budget the trials leave to the closing steps


@dataclass
class FinishEstimate:
    """How long the closing steps of a large data set's search take, re-estimated as
    trials end: the ensemble's selection predicts each member on ``val_images`` validation
    images, test scoring each member on ``test_images`` test images, at the predict speed
    the trials measured (images/s; their harmonic mean), plus a model load per member and
    the reports. ``ensemble``: the most members (below 2: no ensemble)."""

    val_images: int
    test_images: int
    ensemble: int
    trials: int = 0
    seconds_per_image: list[float] = field(default_factory=list)

    def observe(self, images_per_s: float) -> None:
        """A trial ended; ``images_per_s`` its model's predict speed (0: not measured)."""
        self.trials += 1
        if images_per_s and images_per_s > 0:
            self.seconds_per_image.append(1.0 / images_per_s)

    @property
    def images_per_s(self) -> float:
        spi = self.seconds_per_image
        return len(spi) / sum(spi) if spi else PRIOR_IMAGES_PER_S

    def seconds(self) -> float:
        """The closing steps' estimated seconds, with the trials done so far."""
        members = min(self.ensemble, self.trials + 1) if self.ensemble >= 2 else 1
        images = self.test_images + (self.val_images if members >= 2 else 0)
        return FIXED_S + members * (PER_MEMBER_S + images / self.images_per_s)


@dataclass(frozen=True)
class Deadline:
    """When a search's trials and its refit must end (``time.time()`` values).

    ``seconds`` is the budget's length (None: no budget), ``start`` when it began counting,
    ``reserve`` the share of it kept for the refit (0 when the search does not refit),
    ``finish`` the closing steps' estimate the trials leave time for (None: small data).
    """

    start: float
    seconds: float | None = None
    reserve: float = 0.0
    finish: FinishEstimate | None = None

    @classmethod
    def from_budget(
        cls,
        minutes: float | None,
        *,
        refit: bool = False,
        start: float | None = None,
        finish: FinishEstimate | None = None,
    ) -> Deadline:
        """The deadline of a search with ``minutes`` of time budget (None or 0: none)."""
        return cls(
            start=time.time() if start is None else start,
            seconds=minutes * 60 if minutes else None,
            reserve=RESERVE if refit else 0.0,
            finish=finish,
        )

    @property
    def end(self) -> float | None:
        """When the budget ends; None without a budget."""
        return None if self.seconds is None else self.start + self.seconds

    @property
    def trials_end(self) -> float | None:
        """After this no new trial starts, and a running one stops at its epoch end (read
        again for each trial: the closing steps' estimate changes as trials end)."""
        if self.seconds is None:
            return None
        end = self.start + self.seconds - self.reserve * self.seconds
        if self.finish is not None:
            end -= min(self.finish.seconds(), MAX_FINISH * self.seconds)
        return end

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
