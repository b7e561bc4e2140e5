"""JobStore: the one place that queries the workspace database."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import peewee as pw

from app.core.statuses import RUNNING, JobStatus, TransitionError, check_transition, parse_status
from app.core.workspace import Workspace
from app.store.db import open_database
from app.store.models import Job, LabelClass, Mesh, Model, Segmentation, StatusEvent, utcnow

#: Classes a new job starts with: (value, name, colour, is_background).
DEFAULT_CLASSES = [(1, "background", "#3c78d8", True), (2, "specimen", "#f1c232", False)]

QUEUED = frozenset({JobStatus.TRAINING_QUEUED, JobStatus.MESHING_QUEUED})


class JobNotFound(LookupError):
    """No job with that id or name."""


@dataclass(frozen=True)
class TimelineEntry:
    from_status: str | None
    to_status: str
    time: str
    message: str


def _iso(value) -> str | None:
    return value.isoformat(timespec="seconds") + "Z" if value else None


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this pid runs (used to leave live work alone on recovery)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobStore:
    """A workspace's database and job folders."""

    def __init__(self, workspace: Workspace | str | Path | None = None) -> None:
        self.workspace = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
        self.db = open_database(self.workspace.db_path)

    def close(self) -> None:
        self.db.close()

    # -- jobs -----------------------------------------------------------
    def create_job(
        self,
        name: str,
        sources: Iterable[str | Path] = (),
        spacing: tuple[float, float, float] | None = None,
        unit: str = "",
    ) -> Job:
        """A new PENDING job with the default label classes, and its folder."""
        name = name.strip() or "Untitled"
        with self.db.atomic():
            job = Job.create(
                name=name,
                status=JobStatus.PENDING.value,
                sources=[str(Path(s)) for s in sources],
                spacing=list(spacing) if spacing else None,
                unit=unit or "",
            )
            StatusEvent.create(job=job, from_status=None, to_status=job.status, message="created")
            for value, cname, color, background in DEFAULT_CLASSES:
                LabelClass.create(job=job, value=value, name=cname, color=color, is_background=background)
        self.workspace.job_dir(job.id).mkdir(parents=True, exist_ok=True)
        return job

    def get(self, job_id: int) -> Job:
        job = Job.get_or_none(Job.id == int(job_id))
        if job is None:
            raise JobNotFound(f"no job with id {job_id}")
        return job

    def find(self, ref: str | int) -> Job:
        """A job by id, or by exact name when ``ref`` is not a number."""
        text = str(ref).strip()
        if text.isdigit():
            return self.get(int(text))
        matches = list(Job.select().where(Job.name == text))
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise JobNotFound(f"no job with id or name {text!r}")
        ids = ", ".join(str(j.id) for j in matches)
        raise JobNotFound(f"several jobs are named {text!r} (ids {ids}); use the id")

    def list_jobs(self) -> list[Job]:
        """All jobs, newest first."""
        return list(Job.select().order_by(Job.created.desc(), Job.id.desc()))

    def jobs_in(self, statuses: Iterable[JobStatus]) -> list[Job]:
        values = [s.value for s in statuses]
        return list(Job.select().where(Job.status.in_(values)).order_by(Job.id))

    def update(self, job_id: int, **fields: Any) -> None:
        """Set plain fields of a job (shape, dtype, spacing, unit, note, sources...)."""
        fields["updated"] = utcnow()
        Job.update(**fields).where(Job.id == int(job_id)).execute()

    def rename(self, job_id: int, name: str) -> None:
        name = name.strip()
        if not name:
            raise ValueError("a job's name cannot be empty")
        self.get(job_id)
        self.update(job_id, name=name)

    def delete(self, job_id: int) -> None:
        """Remove a job, its rows and its folder."""
        job = self.get(job_id)
        if parse_status(job.status) in RUNNING and pid_alive(job.owner_pid) and job.owner_pid != os.getpid():
            raise TransitionError(f"job {job.id} is being worked on by process {job.owner_pid}; cancel it first")
        with self.db.atomic():
            job.delete_instance(recursive=True)
        shutil.rmtree(self.workspace.job_dir(job_id), ignore_errors=True)

    # -- status ---------------------------------------------------------
    def transition(
        self,
        job_id: int,
        new: JobStatus,
        message: str = "",
        expect: JobStatus | None = None,
        owner_pid: int | None | bool = False,
    ) -> JobStatus:
        """Move a job to ``new`` if the lifecycle allows it; returns the old status.

        The change is a compare-and-set on the current status, so two workers
        can never both claim the same job. ``expect`` requires the current
        status to be that one. ``owner_pid`` (when not False) is stored too.
        Every change is recorded as a :class:`StatusEvent`.
        """
        with self.db.atomic("IMMEDIATE"):
            job = self.get(job_id)
            old = parse_status(job.status)
            if expect is not None and old is not expect:
                raise TransitionError(
                    f"job {job.id} is {old.value!r}, not {expect.value!r}"
                )
            check_transition(old, new)
            fields: dict[str, Any] = {"status": new.value, "updated": utcnow()}
            resting_old = old not in RUNNING and old not in QUEUED
            if new in RUNNING or new in QUEUED:
                if resting_old:
                    fields["previous_status"] = old.value
            else:
                fields["previous_status"] = None
            if message or new not in RUNNING:
                fields["message"] = message
            if new not in RUNNING:
                fields["progress"] = 1.0 if new not in QUEUED and new is not JobStatus.PENDING else 0.0
                fields["progress_message"] = ""
                fields["owner_pid"] = None
            else:
                fields["progress"] = 0.0
                fields["progress_message"] = ""
            if owner_pid is not False:
                fields["owner_pid"] = owner_pid
            updated = (
                Job.update(**fields)
                .where((Job.id == job.id) & (Job.status == old.value))
                .execute()
            )
            if updated != 1:
                raise TransitionError(f"job {job.id} changed status meanwhile")
            StatusEvent.create(job=job.id, from_status=old.value, to_status=new.value, message=message)
        return old

    def set_progress(self, job_id: int, fraction: float, message: str = "") -> None:
        Job.update(progress=float(fraction), progress_message=message, updated=utcnow()).where(
            Job.id == int(job_id)
        ).execute()

    def timeline(self, job_id: int) -> list[TimelineEntry]:
        events = StatusEvent.select().where(StatusEvent.job == int(job_id)).order_by(StatusEvent.id)
        return [TimelineEntry(e.from_status, e.to_status, _iso(e.time), e.message) for e in events]

    # -- label classes ---------------------------------------------------
    def label_classes(self, job_id: int) -> list[LabelClass]:
        return list(LabelClass.select().where(LabelClass.job == int(job_id)).order_by(LabelClass.value))

    # -- summaries ------------------------------------------------------
    def summary(self, job: Job | int) -> dict[str, Any]:
        """A job as plain data (``main.py jobs --json``)."""
        if not isinstance(job, Job):
            job = self.get(job)
        classes = self.label_classes(job.id)
        return {
            "id": job.id,
            "name": job.name,
            "status": job.status,
            "progress": round(float(job.progress), 4),
            "progress_message": job.progress_message,
            "shape": job.shape,
            "dtype": job.dtype,
            "spacing": job.spacing,
            "unit": job.unit,
            "message": job.message,
            "note": job.note,
            "path": str(self.workspace.job_dir(job.id)),
            "sources": job.sources,
            "created": _iso(job.created),
            "updated": _iso(job.updated),
            "classes": [
                {"value": c.value, "name": c.name, "color": c.color, "background": c.is_background}
                for c in classes
            ],
            "annotated_voxels": {c.name: int(c.voxel_count) for c in classes},
            "models": [
                {"id": m.id, "kind": m.kind, "state": m.state, "path": m.path, "metrics": m.metrics}
                for m in Model.select().where(Model.job == job.id).order_by(Model.id)
            ],
            "segmentations": [
                {"id": s.id, "model": s.model_id, "state": s.state, "path": s.path}
                for s in Segmentation.select().where(Segmentation.job == job.id).order_by(Segmentation.id)
            ],
            "meshes": [
                {"id": m.id, "segmentation": m.segmentation_id, "state": m.state, "path": m.path}
                for m in Mesh.select().where(Mesh.job == job.id).order_by(Mesh.id)
            ],
        }
