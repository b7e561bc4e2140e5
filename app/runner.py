"""Qt-free: picks queued work and runs a stage on a job, with statuses and progress.

A stage's glue function lives in ``app.stages``; its signature is
``run(store, job, ctx) -> str | None`` (the optional return is a note kept on
the job's timeline). The runner claims the job (a compare-and-set status
change), runs the stage, and records the outcome: done, cancelled (back to the
status before the stage) or failed (the stage's error status with a message).
"""

from __future__ import annotations

import importlib
import logging
import os
import time
import traceback
from dataclasses import dataclass
from typing import Callable, Protocol

from app.core.progress import Cancelled, ProgressContext, StageError
from app.core.statuses import RECOVERY, RUNNING, SEGMENT_FROM, JobStatus, TransitionError, parse_status
from app.store.jobs import JobStore, pid_alive
from app.store.models import Job

log = logging.getLogger(__name__)
S = JobStatus


@dataclass(frozen=True)
class Stage:
    """One step of the lifecycle that a worker runs."""

    name: str
    queued: JobStatus
    running: JobStatus
    done: JobStatus
    #: Status on failure; None returns the job to the status before the stage.
    error: JobStatus | None
    #: "module:function" of the glue, imported lazily (torch, vtk stay unloaded).
    target: str

    def function(self) -> Callable[[JobStore, Job, ProgressContext], str | None]:
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)


STAGES: tuple[Stage, ...] = (
    Stage("import", S.PENDING, S.UPLOADING, S.UPLOADED, S.ERROR, "app.stages.ingest:import_job"),
    Stage("convert", S.UPLOADED, S.CONVERTING, S.CONVERTED, S.CONVERT_ERROR, "app.stages.ingest:convert_job"),
    Stage("train", S.TRAINING_QUEUED, S.TRAINING, S.TRAINED, None, "app.stages.train:train_job"),
    Stage("segment", S.TRAINED, S.SEGMENTING, S.SEGMENTED, S.SEGMENT_ERROR, "app.stages.segment:segment_job"),
    Stage("mesh", S.MESHING_QUEUED, S.MESHING, S.MESHED, S.MESH_ERROR, "app.stages.mesh:mesh_job"),
)


class RunnerEvents(Protocol):
    """What the runner tells its host (a Qt signal object, the CLI's bar)."""

    def status_changed(self, job_id: int, old: str, new: str) -> None: ...
    def progress(self, job_id: int, fraction: float, message: str) -> None: ...
    def failed(self, job_id: int, message: str) -> None: ...
    def finished(self, job_id: int) -> None: ...


class NullEvents:
    """Events that go nowhere."""

    def status_changed(self, job_id: int, old: str, new: str) -> None:
        pass

    def progress(self, job_id: int, fraction: float, message: str) -> None:
        pass

    def failed(self, job_id: int, message: str) -> None:
        pass

    def finished(self, job_id: int) -> None:
        pass


class Runner:
    """Runs stages on jobs of one store."""

    #: Seconds between progress writes to the database.
    PROGRESS_INTERVAL = 0.25

    def __init__(
        self,
        store: JobStore,
        events: RunnerEvents | None = None,
        stages: tuple[Stage, ...] = STAGES,
    ) -> None:
        self.store = store
        self.events: RunnerEvents = events or NullEvents()
        self.stages = {stage.queued: stage for stage in stages}

    # -- queue ----------------------------------------------------------
    def stage_for(self, job: Job) -> Stage | None:
        """The stage a job waits for, if any."""
        status = parse_status(job.status)
        stage = self.stages.get(status)
        if stage is None and status in SEGMENT_FROM:
            # a segmentation requested from a later resting state (a queued Segmentation row)
            stage = next((s for s in self.stages.values() if s.name == "segment"), None)
        if stage is not None and stage.name == "segment" and not self._segment_pending(job):
            return None
        return stage

    def _segment_pending(self, job: Job) -> bool:
        from app.store.models import Segmentation

        return (
            Segmentation.select()
            .where((Segmentation.job == job.id) & (Segmentation.state.in_(["queued", "running"])))
            .exists()
        )

    def queued_jobs(self) -> list[int]:
        """Ids of jobs with work waiting, oldest first."""
        jobs = self.store.jobs_in(set(self.stages) | SEGMENT_FROM)
        return [job.id for job in jobs if self.stage_for(job) is not None]

    def recover(self) -> list[int]:
        """Put jobs left running by a dead process back in their queue."""
        recovered = []
        for job in self.store.jobs_in(RUNNING):
            if pid_alive(job.owner_pid) and job.owner_pid != os.getpid():
                continue
            status = parse_status(job.status)
            target = RECOVERY.get(status)
            if target is None:
                target = parse_status(job.previous_status) if job.previous_status else S.TRAINED
            try:
                self._move(job.id, target, "interrupted (the app stopped); queued again", owner_pid=None)
                recovered.append(job.id)
            except TransitionError as exc:
                log.warning("could not recover job %s: %s", job.id, exc)
        return recovered

    # -- running ----------------------------------------------------------
    def run_job(self, job_id: int, ctx: ProgressContext | None = None, follow: bool = True) -> JobStatus:
        """Run the job's waiting stage; with ``follow``, the stages after it too.

        Returns the job's final status. Never raises for a stage's failure or a
        cancel: those are recorded on the job (and sent as events).
        """
        while True:
            job = self.store.get(job_id)
            stage = self.stage_for(job)
            if stage is None:
                return parse_status(job.status)
            ctx = ctx or ProgressContext()
            status = self._run_stage(job, stage, ctx)
            if not follow or status is not stage.done or ctx.cancelled:
                return status

    def run_until_idle(self, make_ctx: Callable[[int], ProgressContext] | None = None) -> list[int]:
        """Run every queued job until nothing is left; returns the ids worked on."""
        done: list[int] = []
        failed_before: set[int] = set()
        while True:
            pending = [j for j in self.queued_jobs() if j not in failed_before]
            if not pending:
                return done
            job_id = pending[0]
            ctx = make_ctx(job_id) if make_ctx else ProgressContext()
            before = self.store.get(job_id).status
            status = self.run_job(job_id, ctx)
            done.append(job_id)
            if ctx.cancelled or status.value == before:
                failed_before.add(job_id)

    def cancel_queued(self, job_id: int) -> None:
        """Take a job out of its queue, back to the status it had before."""
        job = self.store.get(job_id)
        previous = parse_status(job.previous_status) if job.previous_status else None
        if previous is None:
            raise TransitionError(f"job {job_id} has nothing queued to cancel")
        self._move(job_id, previous, "cancelled")

    def _move(self, job_id: int, new: JobStatus, message: str = "", **kw) -> JobStatus:
        old = self.store.transition(job_id, new, message, **kw)
        self.events.status_changed(job_id, old.value, new.value)
        return old

    def _run_stage(self, job: Job, stage: Stage, ctx: ProgressContext) -> JobStatus:
        try:
            # expect the status stage_for saw (a re-segmentation starts from a resting state)
            self._move(job.id, stage.running, expect=parse_status(job.status), owner_pid=os.getpid())
        except TransitionError:
            return parse_status(self.store.get(job.id).status)  # someone else took it
        job = self.store.get(job.id)
        previous = parse_status(job.previous_status) if job.previous_status else stage.queued
        last_write = [0.0]

        def on_progress(fraction: float, message: str) -> None:
            now = time.monotonic()
            if now - last_write[0] >= self.PROGRESS_INTERVAL or fraction >= 1.0:
                last_write[0] = now
                self.store.set_progress(job.id, fraction, message)
            self.events.progress(job.id, fraction, message)

        stage_ctx = ctx.tee(on_progress)
        try:
            note = stage.function()(self.store, job, stage_ctx)
        except Cancelled:
            self._move(job.id, previous, f"{stage.name} cancelled")
            self.events.finished(job.id)
            return previous
        except StageError as exc:
            return self._fail(job.id, stage, previous, str(exc))
        except Exception as exc:  # noqa: BLE001 - any failure ends on the job, not in a crash
            self._write_error_log(job.id, stage)
            return self._fail(job.id, stage, previous, f"unexpected error in {stage.name}: {type(exc).__name__}: {exc}")
        self._move(job.id, stage.done, note or "")
        self.events.finished(job.id)
        return stage.done

    def _fail(self, job_id: int, stage: Stage, previous: JobStatus, message: str) -> JobStatus:
        target = stage.error or previous
        self._move(job_id, target, message)
        self.events.failed(job_id, message)
        self.events.finished(job_id)
        return target

    def _write_error_log(self, job_id: int, stage: Stage) -> None:
        path = self.store.workspace.job_dir(job_id) / "error.log"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(f"--- {stage.name} {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
                handle.write(traceback.format_exc())
        except OSError:
            log.exception("could not write the error log of job %s", job_id)
