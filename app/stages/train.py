"""Glue of the "train" stage: a queued Model row -> a trained model on disk + a queued segmentation.

:func:`request_training` (CLI, window) adds a Model row in state "queued" and
puts the job in TRAINING_QUEUED; the runner then calls :func:`train_job`, which
fits the model, stores it with its metrics, and queues a Segmentation so the
runner goes on to segment the volume.
"""

from __future__ import annotations

from typing import Any

from app.core.progress import Cancelled, ProgressContext, StageError
from app.core.statuses import JobStatus, TransitionError, can_transition, parse_status
from app.store.jobs import JobStore
from app.store.models import Job, Model, Segmentation

KINDS = ("quick", "deep")


def request_training(store: JobStore, job_id: int, kind: str, params: dict[str, Any] | None = None) -> Model:
    """Queue a training of ``kind`` ("quick" or "deep") with ``params``; returns its Model row."""
    params = dict(params or {})
    if kind not in KINDS:
        raise ValueError(f"model kind must be one of {', '.join(KINDS)}, not {kind!r}")
    _validate(kind, params)
    job = store.get(job_id)
    status = parse_status(job.status)
    if status is JobStatus.CONVERTED and _has_paint(store, job.id):
        store.transition(job.id, JobStatus.ANNOTATED, "paint found")
        status = JobStatus.ANNOTATED
    if not can_transition(status, JobStatus.TRAINING_QUEUED):
        raise TransitionError(
            f"job {job.id} is {status.value!r}: training needs a converted volume with paint "
            "(annotated or later) and no other work running"
        )
    row = Model.create(job=job.id, kind=kind, params=params, state="queued")
    try:
        store.transition(job.id, JobStatus.TRAINING_QUEUED, f"{kind} training requested (model {row.id})")
    except Exception:
        row.delete_instance()
        raise
    return row


def _validate(kind: str, params: dict) -> None:
    from app.pipeline.features import FeatureSpec

    if "scales" in params:
        FeatureSpec(tuple(float(s) for s in params["scales"]), params.get("mode", "2d"))
    elif "mode" in params:
        FeatureSpec(mode=params["mode"])
    if kind == "deep" and int(params.get("epochs", 1)) < 1:
        raise ValueError("epochs must be at least 1")


def _has_paint(store: JobStore, job_id: int) -> bool:
    from app.pipeline.annotations import stored_chunks

    path = store.workspace.annotations_path(job_id)
    if not (path / "zarr.json").is_file():
        return False
    import zarr

    return bool(stored_chunks(zarr.open_array(str(path), mode="r")))


def pending_model(job: Job) -> Model | None:
    """The model row a queued training works on (newest queued, or one a crash interrupted)."""
    return (
        Model.select()
        .where((Model.job == job.id) & (Model.state.in_(["queued", "training"])))
        .order_by(Model.id.desc())
        .first()
    )


def train_job(store: JobStore, job: Job, ctx: ProgressContext) -> str | None:
    """Train the job's queued model; on success queue a segmentation with it."""
    row = pending_model(job)
    if row is None:
        raise StageError(f"job {job.id}: no training was requested")
    # older queued rows (superseded requests) are dropped
    Model.update(state="cancelled").where(
        (Model.job == job.id) & (Model.state.in_(["queued", "training"])) & (Model.id != row.id)
    ).execute()
    Model.update(state="training").where(Model.id == row.id).execute()
    try:
        model, metrics, paint = _train(store, job, row, ctx)
        folder = store.workspace.model_dir(job.id, row.id)
        model.save(folder)
        Model.update(
            state="ready",
            path=str(folder),
            n_voxels=int(paint.count),
            n_slices=len(paint.planes),
            metrics=metrics,
        ).where(Model.id == row.id).execute()
    except Cancelled:
        Model.update(state="cancelled").where(Model.id == row.id).execute()
        raise
    except BaseException:
        Model.update(state="failed").where(Model.id == row.id).execute()
        raise
    cleanup = dict(row.params.get("cleanup") or {})
    seg = Segmentation.create(job=job.id, model=row.id, params={"cleanup": cleanup}, state="queued")
    Segmentation.update(path=str(store.workspace.segmentation_path(job.id, seg.id))).where(
        Segmentation.id == seg.id
    ).execute()
    return f"model {row.id} ({row.kind}) trained; {summary_line(metrics)}"


def summary_line(metrics: dict) -> str:
    held = metrics.get("held_out")
    if not held:
        return "held-out accuracy: not enough painted slices"
    parts = [f"class {k} Dice {v['dice']:.3f}" for k, v in held.items()]
    return "held-out " + ", ".join(parts)


def _train(store: JobStore, job: Job, row: Model, ctx: ProgressContext):
    from app.pipeline.annotations import open_annotations
    from app.pipeline.quick import normalisation_for
    from app.pipeline.training_data import check_paint, read_paint

    volume = open_job_volume(store, job.id)
    ann_path = store.workspace.annotations_path(job.id)
    annotations = open_annotations(ann_path, volume.shape)
    ctx.report(0.0, "reading the paint")
    paint = read_paint(annotations)
    check_paint(paint, str(ann_path))
    norm = normalisation_for(volume)
    if row.kind == "quick":
        from app.pipeline.quick import QuickParams, train_quick

        params = QuickParams.from_dict(row.params)
        model, metrics = train_quick(volume.levels[0], paint, params, norm, ctx.sub(0.02, 1.0), str(ann_path))
    else:
        from app.pipeline.unet import UNetParams, train_unet

        params = UNetParams.from_dict(row.params)
        model, metrics = train_unet(volume.levels[0], paint, params, norm, ctx.sub(0.02, 1.0), str(volume.path))
    return model, metrics, paint


def open_job_volume(store: JobStore, job_id: int):
    from app.pipeline.volume import open_volume

    path = store.workspace.volume_path(job_id)
    if not (path / "zarr.json").is_file():
        raise StageError(f"{path}: the job has no converted volume yet")
    try:
        return open_volume(path)
    except Exception as exc:  # noqa: BLE001 - a damaged volume is the user's to know
        raise StageError(f"{path}: cannot open the volume ({exc})") from exc
