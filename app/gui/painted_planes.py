"""Which slices paint was laid on, worked out in a pool thread for the Annotate page's summary.

A stroke on a z slice also crosses many y and x slices; the summary lists the
slices a user painted on (the rule training splits paint by), so it is worked
out from every painted voxel, away from the UI thread, a moment after the paint
changed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PySide6.QtCore import QObject, QThreadPool, QTimer, Signal

from app.gui.worker import BackgroundTask

log = logging.getLogger(__name__)


class PaintedPlanes(QObject):
    """The slices of each plane that the open job's paint was laid on.

    :meth:`changed` (after a stroke, an import, a class deleted) asks for a new
    answer :attr:`DELAY_MS` later; asks while one is worked out make one more run.
    :attr:`planes` is None until the first answer, or when there is too much
    paint to look through (the summary then lists every slice holding paint).
    """

    #: A new answer is in :attr:`planes`.
    ready = Signal()
    DELAY_MS = 250
    RETRIES = 3

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.planes: dict[int, list[int]] | None = None
        self._path: Path | None = None
        self._profiles: Callable[[], Sequence[np.ndarray]] | None = None
        self._generation = 0
        self._running = False
        self._again = False
        self._failures = 0
        self._task: BackgroundTask | None = None
        self._finder = None
        self._pool = QThreadPool(self)  # its own thread: never queued behind an import or export
        self._pool.setMaxThreadCount(1)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(self.DELAY_MS)
        self._timer.timeout.connect(self._start)

    def open(self, path: str | Path, profiles: Callable[[], Sequence[np.ndarray]]) -> None:
        """Follow the annotations at ``path``; ``profiles()`` gives the paint per slice of each plane now."""
        self._generation += 1
        self.planes = None
        self._path = Path(path)
        self._profiles = profiles
        self._failures = 0
        self._finder = None  # made in the worker, with the first answer
        self.changed()

    def close(self) -> None:
        """Stop following: an answer still being worked out is dropped."""
        self._generation += 1
        self.planes = None
        self._path = None
        self._profiles = None
        self._timer.stop()

    def changed(self) -> None:
        if self._path is not None:
            self._timer.start()

    def stroke_on(self, axis: int, index: int) -> None:
        """A stroke was laid on slice ``index`` of plane ``axis``: listed at once, until the next answer."""
        if self.planes is not None and index not in self.planes[axis]:
            self.planes[axis] = sorted([*self.planes[axis], int(index)])
        self.changed()

    @property
    def busy(self) -> bool:
        return self._running or self._timer.isActive()

    def _start(self) -> None:
        if self._path is None or self._profiles is None:
            return
        if self._running:
            self._again = True
            return
        self._running, self._again = True, False
        generation, path = self._generation, self._path
        profiles = [np.array(p, copy=True) for p in self._profiles()]

        def work():
            from app.pipeline.annotations import PlaneFinder

            finder = self._finder
            if finder is None or finder.path != path:
                finder = self._finder = PlaneFinder(path)
            return finder.planes(profiles)

        self._task = BackgroundTask(work, lambda planes: self._done(generation, planes),
                                    lambda message: self._failed(generation, message))
        self._pool.start(self._task)

    def _done(self, generation: int, planes: dict[int, list[int]] | None) -> None:
        self._running = False
        if generation == self._generation:
            self.planes = planes
            self._failures = 0
            self.ready.emit()
        if self._again:
            self.changed()

    def _failed(self, generation: int, message: str) -> None:
        """A chunk read as it was written, most likely: look again, a few times."""
        self._running = False
        log.debug("painted planes: %s", message)
        if generation == self._generation:
            self._failures += 1
        if self._again or (generation == self._generation and self._failures < self.RETRIES):
            self.changed()

    def wait(self, msecs: int = 30000) -> bool:
        """Process events until no answer is pending (for tests and scripts); False on time-out."""
        import time

        from PySide6.QtCore import QCoreApplication

        deadline = time.monotonic() + msecs / 1000
        while self.busy:
            if time.monotonic() > deadline:
                return False
            self._pool.waitForDone(20)
            QCoreApplication.processEvents()
        return True
