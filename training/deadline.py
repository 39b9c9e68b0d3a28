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

__all__ = ["Deadline", "now", "share_deadline"]


def now() -> float:
    """The clock of :class:`Deadline` by default: ``time.time()``, which is shared across
    processes, so a deadline set by the parent holds in fold workers. (Tests replace this
    module attribute with a virtual clock.)"""
    return time.time()


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
    clock : callable, optional
        Returns the current time; default :func:`now`, looked up at each call.
    """

    at: float
    clock: Callable[[], float] | None = field(default=None, compare=False)

    def _now(self) -> float:
        return (self.clock or now)()

    def remaining(self) -> float:
        """Seconds left (negative once passed)."""
        return self.at - self._now()

    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return self._now() >= self.at

    def share(self, units_left: int) -> Deadline:
        """The deadline of the next of ``units_left`` equal units (:func:`share_deadline`)."""
        return Deadline(share_deadline(self.at, self._now(), units_left), self.clock)
