"""Annotation glue: the job-status rule, class counts, and import/export of a job's labels.

Rule: a CONVERTED job becomes ANNOTATED as soon as at least two classes have
paint, and goes back to CONVERTED when fewer do. Later states are left alone.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Mapping, Sequence

import zarr

from app.core.progress import ProgressContext, StageError
from app.core.statuses import JobStatus, TransitionError, parse_status
from app.store.jobs import JobStore
from app.store.label_classes import list_classes, set_counts
from app.store.models import Job

S = JobStatus
#: Statuses in which the job has a converted volume to paint on.
HAS_VOLUME = frozenset(set(JobStatus) - {S.PENDING, S.UPLOADING, S.UPLOADED, S.CONVERTING, S.CONVERT_ERROR, S.ERROR})


def apply_status_rule(store: JobStore, job_id: int) -> tuple[str, str] | None:
    """Move CONVERTED <-> ANNOTATED after the class counts changed; returns (old, new) if it moved."""
    job = store.get(job_id)
    status = parse_status(job.status)
    painted = sum(1 for c in list_classes(store, job_id) if c.voxel_count > 0)
    target = None
    if status is S.CONVERTED and painted >= 2:
        target = S.ANNOTATED
    elif status is S.ANNOTATED and painted < 2:
        target = S.CONVERTED
    if target is None:
        return None
    message = "two classes painted" if target is S.ANNOTATED else "fewer than two classes painted"
    try:
        store.transition(job_id, target, message, expect=status)
    except TransitionError:
        return None  # changed meanwhile; the next edit applies the rule again
    return status.value, target.value


def record_counts(store: JobStore, job_id: int, counts: Mapping[int, int]) -> tuple[str, str] | None:
    """Store painted voxels per class and apply the status rule."""
    set_counts(store, job_id, counts)
    return apply_status_rule(store, job_id)


def volume_shape(store: JobStore, job: Job) -> tuple[int, int, int]:
    """Shape of the job's converted volume (level 0)."""
    if parse_status(job.status) not in HAS_VOLUME:
        raise StageError(f"job {job.id} ({job.name}) is {job.status}: convert it before annotating")
    path = store.workspace.volume_path(job.id)
    if not (path / "zarr.json").is_file():
        raise StageError(f"{path}: the job's converted volume is missing")
    from app.pipeline.volume import open_volume

    return open_volume(path).shape


def job_annotations(store: JobStore, job: Job, create: bool = True) -> zarr.Array:
    """The job's ``annotations.zarr`` (created empty when missing and ``create``)."""
    from app.pipeline.annotations import open_annotations

    return open_annotations(store.workspace.annotations_path(job.id), volume_shape(store, job), create=create)


def recount(store: JobStore, job: Job, array: zarr.Array | None = None) -> tuple[str, str] | None:
    """Count the painted voxels on disk again and apply the status rule."""
    from app.pipeline.annotations import class_counts

    array = array if array is not None else job_annotations(store, job)
    return record_counts(store, job.id, class_counts(array))


def import_job_labels(
    store: JobStore,
    job: Job,
    source: str | Path,
    slices: tuple[int, Sequence[int]] | None = None,
    mapping: Mapping[int, int] | None = None,
    ctx: ProgressContext | None = None,
) -> int:
    """Import a label volume into a job's annotations (all of it, or ``slices`` = (axis, indices)).

    Returns the voxels imported with a class. Bad input raises StageError and changes nothing.
    """
    from app.pipeline.annotations import import_labels

    path = store.workspace.annotations_path(job.id)
    existed = (path / "zarr.json").is_file()
    array = job_annotations(store, job)
    axis, indices = slices if slices else (None, None)
    values = [c.value for c in list_classes(store, job.id)]
    try:
        written = import_labels(array, source, values, mapping, axis, indices, ctx)
    except StageError:
        if not existed:  # leave no empty annotations behind a refused import
            shutil.rmtree(path, ignore_errors=True)
        raise
    recount(store, job, array)
    return written


def export_job_annotations(
    store: JobStore, job: Job, fmt: str, out: str | Path, ctx: ProgressContext | None = None
) -> list[Path]:
    """Export a job's annotations as tiff, zarr or npy."""
    from app.pipeline.annotations import export_annotations

    path = store.workspace.annotations_path(job.id)
    if not (path / "zarr.json").is_file():
        raise StageError(f"job {job.id} ({job.name}) has no annotations yet: nothing to export")
    return export_annotations(job_annotations(store, job, create=False), fmt, out, ctx)
