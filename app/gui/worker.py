"""Background work for the window: stages in a QThreadPool, reporting through Qt signals.

:class:`JobScheduler` runs :meth:`app.runner.Runner.run_job` in ``QRunnable``
workers. A worker's :class:`StageSignals` emit ``status_changed``,
``progress``, ``failed`` and ``finished``; the scheduler re-emits them so that
widgets connect to one object and only listen.
"""

from __future__ import annotations

import threading
import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, QTimer, Signal, Slot

from app.core.progress import ProgressContext
from app.runner import STAGES, Runner
from app.store.jobs import JobStore


class StageSignals(QObject):
    """Signals of one worker (emitted from its thread, delivered queued to the UI)."""

    status_changed = Signal(int, str, str)
    progress = Signal(int, float, str)
    failed = Signal(int, str)
    finished = Signal(int)


class _EmitEvents:
    """RunnerEvents that emit the signals of ``target`` (a StageSignals or the scheduler).

    ``finished`` is not forwarded: the runner says it after every stage, and with
    ``follow`` more stages may come; the runnable emits it once, when it has ended.
    """

    def __init__(self, target: QObject) -> None:
        self.target = target

    def status_changed(self, job_id: int, old: str, new: str) -> None:
        self.target.status_changed.emit(job_id, old, new)

    def progress(self, job_id: int, fraction: float, message: str) -> None:
        self.target.progress.emit(job_id, fraction, message)

    def failed(self, job_id: int, message: str) -> None:
        self.target.failed.emit(job_id, message)

    def finished(self, job_id: int) -> None:
        pass


class StageRunnable(QRunnable):
    """Runs a job's waiting stage(s) in a pool thread."""

    def __init__(
        self, store: JobStore, job_id: int, ctx: ProgressContext, signals: StageSignals, stages=STAGES
    ) -> None:
        super().__init__()
        self.store = store
        self.stages = stages
        self.job_id = job_id
        self.ctx = ctx
        self.signals = signals
        self.setAutoDelete(True)

    def run(self) -> None:  # noqa: D102 - runs in a pool thread
        try:
            if self.ctx.cancelled:  # cancelled while waiting for a free thread
                return
            Runner(self.store, _EmitEvents(self.signals), self.stages).run_job(self.job_id, self.ctx)
        except Exception as exc:  # noqa: BLE001 - never let a worker die silently
            traceback.print_exc()
            self.signals.failed.emit(self.job_id, f"{type(exc).__name__}: {exc}")
        finally:
            self.signals.finished.emit(self.job_id)


class JobScheduler(QObject):
    """Starts, tracks and cancels stage workers; re-emits their signals."""

    status_changed = Signal(int, str, str)
    progress = Signal(int, float, str)
    failed = Signal(int, str)
    finished = Signal(int)
    #: Emitted once the scheduler has no running worker left.
    idle = Signal()

    def __init__(
        self, store: JobStore, max_threads: int = 2, parent: QObject | None = None, stages=STAGES
    ) -> None:
        super().__init__(parent)
        self.store = store
        #: The runner's stage table; tests pass their own.
        self.stages = stages
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max(1, max_threads))
        self._contexts: dict[int, ProgressContext] = {}
        self._signals: dict[int, StageSignals] = {}

    def submit(self, job_id: int) -> bool:
        """Run the job's waiting stage in the pool (no-op if it already runs)."""
        if job_id in self._contexts:
            return False
        ctx = ProgressContext(cancel_event=threading.Event())
        signals = StageSignals()
        signals.status_changed.connect(self.status_changed)
        signals.progress.connect(self.progress)
        signals.failed.connect(self.failed)
        signals.finished.connect(self._on_worker_finished)
        self._contexts[job_id] = ctx
        self._signals[job_id] = signals
        self.pool.start(StageRunnable(self.store, job_id, ctx, signals, self.stages))
        return True

    def start_queued(self) -> list[int]:
        """Recover jobs a crash left running, then start every queued job."""
        runner = Runner(self.store, stages=self.stages)
        runner.recover()
        started = [job_id for job_id in runner.queued_jobs() if self.submit(job_id)]
        return started

    def is_running(self, job_id: int) -> bool:
        return job_id in self._contexts

    def running_jobs(self) -> list[int]:
        return list(self._contexts)

    def cancel(self, job_id: int) -> bool:
        """Ask a running job's stage to stop; returns whether one was running."""
        ctx = self._contexts.get(job_id)
        if ctx is None:
            return False
        ctx.cancel()
        return True

    def cancel_queued(self, job_id: int) -> None:
        """Take a job waiting in a queue (not running) back to its previous status.

        Raises :class:`app.core.statuses.TransitionError` when nothing is queued.
        """
        Runner(self.store, _EmitEvents(self), self.stages).cancel_queued(job_id)

    def cancel_all(self) -> None:
        for ctx in self._contexts.values():
            ctx.cancel()

    def wait(self, msecs: int = -1) -> bool:
        """Block until the pool is idle (tests and shutdown)."""
        return self.pool.waitForDone(msecs)

    @Slot(int)
    def _on_worker_finished(self, job_id: int) -> None:
        if self._contexts.pop(job_id, None) is None:
            return
        self._signals.pop(job_id, None)
        self.finished.emit(job_id)
        if not self._contexts:
            self.idle.emit()


#: Signal objects of background tasks whose result is not delivered yet. A task's
#: QRunnable is deleted when ``run`` returns; without this reference its signal
#: object would go with it and a queued result to a plain function be dropped.
_IN_FLIGHT: set["_TaskSignals"] = set()


class _TaskSignals(QObject):
    """Carries a task's outcome to the UI thread, where it calls the callbacks."""

    succeeded = Signal(object)
    errored = Signal(str)

    def __init__(self, on_done, on_error) -> None:
        super().__init__()
        self._on_done = on_done
        self._on_error = on_error
        # Connected to this object's own slots: it lives in the UI thread, so
        # delivery is queued there whatever the callbacks are.
        self.succeeded.connect(self._deliver_done)
        self.errored.connect(self._deliver_error)

    @Slot(object)
    def _deliver_done(self, result: Any) -> None:
        try:
            if self._on_done is not None:
                self._on_done(result)
        finally:
            self._release()

    @Slot(str)
    def _deliver_error(self, message: str) -> None:
        try:
            if self._on_error is not None:
                self._on_error(message)
        finally:
            self._release()

    def _release(self) -> None:
        QTimer.singleShot(0, lambda: _IN_FLIGHT.discard(self))


class BackgroundTask(QRunnable):
    """Run ``fn()`` in a pool thread; ``on_done(result)`` / ``on_error(message)`` on the UI thread.

    Create it on the UI thread. The callbacks may be any callables.
    """

    def __init__(
        self,
        fn: Callable[[], Any],
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self.fn = fn
        self.signals = _TaskSignals(on_done, on_error)
        _IN_FLIGHT.add(self.signals)
        self.setAutoDelete(True)

    def run(self) -> None:  # noqa: D102
        try:
            result = self.fn()
        except Exception as exc:  # noqa: BLE001
            self.signals.errored.emit(str(exc) or type(exc).__name__)
            return
        self.signals.succeeded.emit(result)
