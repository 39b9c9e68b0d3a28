"""Wall-clock deadlines of a ``--time-budget`` run, with an injectable clock.

``TrainConfig.stop_at`` is the time by which the whole run's training must
end. :func:`share_deadline` splits what is left of it evenly over the units of
work still to do (folds, then the models of a fold), so an early fold that
overruns its estimate takes time from the later ones instead of from the
budget. :class:`Deadline` is what a training pass checks after every batch;
its clock is a parameter so the stopping logic is tested with a virtual clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Deadline", "share_deadline"]


def share_deadline(stop_at: float, now: float, units_left: int) -> float:
    """The deadline of the next of ``units_left`` equal units of work ending by ``stop_at``.

    Parameters
    ----------
    stop_at : float
        When all the remaining work must be done (clock seconds).
    now : float
        The current time on the same clock.
    units_left : int
        Units of work left, this one included (>= 1).

    Returns
    -------
    float
        ``now + (stop_at - now) / units_left``; ``stop_at`` itself when it has
        passed already (the unit then stops at once).

    Raises
    ------
    ValueError
        When ``units_left`` < 1.
    """
    if units_left < 1:
        raise ValueError(f"units_left must be >= 1; got {units_left}")
    if now >= stop_at:
        return stop_at
    return now + (stop_at - now) / units_left


@dataclass(frozen=True)
class Deadline:
    """A point in time that a training pass must not run past.

    Attributes
    ----------
    at : float
        The deadline in ``clock()`` seconds.
    clock : callable
        Returns the current time (default ``time.time``, which is shared across
        processes, so a deadline set by the parent holds in fold workers).
    """

    at: float
    clock: Callable[[], float] = field(default=time.time, compare=False)

    def remaining(self) -> float:
        """Seconds left (negative once passed)."""
        return self.at - self.clock()

    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return self.clock() >= self.at

    def share(self, units_left: int) -> Deadline:
        """The deadline of the next of ``units_left`` equal units (:func:`share_deadline`)."""
        return Deadline(share_deadline(self.at, self.clock(), units_left), self.clock)
