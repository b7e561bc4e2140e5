"""Progress reporting and cooperative cancellation for stages."""

from __future__ import annotations

import threading
from typing import Callable

ProgressCallback = Callable[[float, str], None]


class Cancelled(Exception):
    """Raised by :meth:`ProgressContext.check_cancelled` once the user cancelled."""


class StageError(Exception):
    """A failure the user can act on; the message names the file and the problem."""


class ProgressContext:
    """What a stage gets to report progress and notice a cancel.

    ``report(fraction, message)`` forwards to a callback (a terminal bar in the
    CLI, a Qt signal in the GUI); ``check_cancelled()`` raises :class:`Cancelled`
    once :meth:`cancel` was called, from any thread.
    """

    def __init__(
        self,
        callback: ProgressCallback | None = None,
        cancel_event: threading.Event | None = None,
        start: float = 0.0,
        end: float = 1.0,
    ) -> None:
        self._callback = callback
        self._cancel = cancel_event or threading.Event()
        self._start = start
        self._end = end
        self.fraction = start
        self.message = ""

    def report(self, fraction: float, message: str = "") -> None:
        """Report progress of this (sub)task, ``fraction`` in [0, 1]."""
        fraction = min(max(float(fraction), 0.0), 1.0)
        self.fraction = self._start + (self._end - self._start) * fraction
        if message:
            self.message = message
        if self._callback is not None:
            self._callback(self.fraction, self.message)

    def check_cancelled(self) -> None:
        """Raise :class:`Cancelled` if the user cancelled."""
        if self._cancel.is_set():
            raise Cancelled("cancelled by the user")

    def cancel(self) -> None:
        """Ask the stage to stop at its next check."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def tee(self, callback: ProgressCallback) -> "ProgressContext":
        """A context sharing this one's cancel flag that reports to ``callback`` too."""
        own = self._callback

        def both(fraction: float, message: str) -> None:
            callback(fraction, message)
            if own is not None:
                own(fraction, message)

        return ProgressContext(both, self._cancel)

    def sub(self, start: float, end: float) -> "ProgressContext":
        """A child context whose [0, 1] maps onto [start, end] of this one."""
        span = self._end - self._start
        child = ProgressContext(
            self._callback, self._cancel, self._start + span * start, self._start + span * end
        )
        return child
