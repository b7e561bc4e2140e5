"""Glue of the "segment" stage: a queued Segmentation row -> labels on disk.

:func:`request_segmentation` queues a segmentation of a job with any ready
model (of this job or another one); the runner then calls :func:`segment_job`.
A run killed half-way resumes from the blocks already written.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from app.core.progress import Cancelled, ProgressContext, StageError
from app.core.statuses import SEGMENT_FROM, JobStatus, TransitionError, parse_status
from app.store.jobs import JobStore
from app.store.models import Job, LabelClass, Model, Segmentation


def load_model(folder: str | Path):
    """A saved model (quick or deep) from its folder."""
    folder = Path(folder)
    meta_path = folder / "model.json"
    if not meta_path.is_file():
        raise StageError(f"{meta_path}: the model's files are missing")
    kind = json.loads(meta_path.read_text()).get("kind")
    if kind == "quick":
        from app.pipeline.quick import QuickModel

        return QuickModel.load(folder)
    if kind == "deep":
        from app.pipeline.unet import UNetModel

        return UNetModel.load(folder)
    raise StageError(f"{meta_path}: unknown model kind {kind!r}")


def ready_model(job_id: int, model_id: int | None = None) -> Model:
    """The model to segment with: ``model_id`` (any job's) or the job's newest ready one."""
    if model_id is not None:
        row = Model.get_or_none(Model.id == int(model_id))
        if row is None:
            raise LookupError(f"no model with id {model_id}")
    else:
        row = (
            Model.select()
            .where((Model.job == int(job_id)) & (Model.state == "ready"))
            .order_by(Model.id.desc())
            .first()
        )
        if row is None:
            raise LookupError(f"job {job_id} has no trained model; train one first")
    if row.state != "ready":
        raise ValueError(f"model {row.id} is {row.state!r}, not ready to segment")
    return row


def check_model_fits(store: JobStore, job_id: int, row: Model):
    """Load a model and the job's volume; raise a clear error when it cannot segment it.

    Returns ``(model, volume)``.
    """
    from app.pipeline.quick import check_compatible
    from app.stages.train import open_job_volume

    model = load_model(row.path)
    volume = open_job_volume(store, job_id)
    check_compatible(model, volume, f"model {row.id} on {volume.path}")
    min_side = getattr(model, "min_side", 1)
    if min(volume.shape[1:]) < min_side:
        raise StageError(
            f"{volume.path}: the volume {tuple(volume.shape)} is too small for model {row.id} "
            f"(slices of at least {min_side} x {min_side} voxels)"
        )
    return model, volume


def request_segmentation(
    store: JobStore,
    job_id: int,
    model_id: int | None = None,
    cleanup: dict[str, Any] | None = None,
    block: tuple[int, int, int] | None = None,
) -> Segmentation:
    """Queue a segmentation of a job with a ready model; the runner picks it up."""
    job = store.get(job_id)
    status = parse_status(job.status)
    if status not in SEGMENT_FROM:
        raise TransitionError(
            f"job {job.id} is {status.value!r}: segmenting needs an annotated or trained job "
            "with no other work running"
        )
    row = ready_model(job.id, model_id)
    check_model_fits(store, job.id, row)
    params: dict[str, Any] = {"cleanup": dict(cleanup or {})}
    if block:
        params["block"] = [int(b) for b in block]
    seg = Segmentation.create(job=job.id, model=row.id, params=params, state="queued")
    Segmentation.update(path=str(store.workspace.segmentation_path(job.id, seg.id))).where(
        Segmentation.id == seg.id
    ).execute()
    return Segmentation.get_by_id(seg.id)


def pending_segmentation(job: Job) -> Segmentation | None:
    """The oldest queued or interrupted segmentation of a job."""
    return (
        Segmentation.select()
        .where((Segmentation.job == job.id) & (Segmentation.state.in_(["queued", "running"])))
        .order_by(Segmentation.id)
        .first()
    )


def segment_job(store: JobStore, job: Job, ctx: ProgressContext) -> str | None:
    """Segment the job's volume with the pending Segmentation's model."""
    from app.pipeline.postprocess import CleanUp, clean_array
    from app.pipeline.segment import clear_output, segment_volume

    seg = pending_segmentation(job)
    if seg is None:
        raise StageError(f"job {job.id}: no segmentation was requested")
    path = Path(seg.path or store.workspace.segmentation_path(job.id, seg.id))
    resumed = seg.state == "running"
    Segmentation.update(state="running", path=str(path)).where(Segmentation.id == seg.id).execute()
    try:
        if seg.model_id is None or Model.get_or_none(Model.id == seg.model_id) is None:
            raise StageError(f"segmentation {seg.id}: its model was deleted")
        row = Model.get_by_id(seg.model_id)
        model, volume = check_model_fits(store, job.id, row)
        chosen = seg.params.get("block")
        block = tuple(chosen) if chosen else None  # None: the model's preferred block
        attrs = {
            "strata": {
                "kind": "segmentation",
                "spacing": list(volume.spacing),
                "unit": volume.unit,
                "model": row.id,
                "classes": list(model.classes),
            }
        }
        last = [0.0]

        def on_block(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] > 0.5 or done == total:
                last[0] = now
                Segmentation.update(blocks_done=done, blocks_total=total).where(
                    Segmentation.id == seg.id
                ).execute()

        started = time.perf_counter()
        cleanup = CleanUp.from_dict(seg.params.get("cleanup"))
        seg_ctx = ctx.sub(0.0, 0.9 if cleanup.active else 1.0)
        out = segment_volume(volume.levels[0], model, path, block, ctx=seg_ctx, attrs=attrs, on_block=on_block)
        if cleanup.active:
            background = [
                c.value for c in LabelClass.select().where((LabelClass.job == job.id) & LabelClass.is_background)
            ]
            scratch = path.with_name(path.name + ".cleanup")
            clean_array(out, model.classes, background, cleanup, ctx.sub(0.9, 1.0), scratch)
        seconds = time.perf_counter() - started
    except Cancelled:
        Segmentation.update(state="cancelled").where(Segmentation.id == seg.id).execute()
        clear_output(path)
        raise
    except BaseException:
        Segmentation.update(state="failed").where(Segmentation.id == seg.id).execute()
        raise
    total = int(Segmentation.get_by_id(seg.id).blocks_total) or 0
    Segmentation.update(state="complete", blocks_done=total).where(Segmentation.id == seg.id).execute()
    voxels = 1
    for n in volume.shape:
        voxels *= int(n)
    rate = voxels / seconds / 1e6 if seconds > 0 else 0.0
    how = "resumed and finished" if resumed else "done"
    return f"segmentation {seg.id} with model {row.id} {how} ({rate:.2f} Mvoxel/s)"


__all__ = [
    "request_segmentation",
    "segment_job",
    "load_model",
    "ready_model",
    "pending_segmentation",
    "JobStatus",
]


# -- export ----------------------------------------------------------------------
SEGMENTATION_FORMATS = ("tiff", "png", "zarr")


def export_segmentation(store: JobStore, job: Job, fmt: str, out: str, args=None) -> list[Path]:
    """``main.py export JOB --what segmentation``: the newest complete segmentation (or ``--id``).

    tiff: one ImageJ multi-page file with voxel size and unit when ``out`` ends in
    .tif/.tiff, else a folder of per-slice TIFFs (with the in-plane resolution);
    png: a folder of per-slice PNGs; zarr: a zarr v3 array with spacing and unit.
    """
    seg_id = getattr(args, "id", None) if args is not None else None
    query = Segmentation.select().where((Segmentation.job == job.id) & (Segmentation.state == "complete"))
    if seg_id is not None:
        query = query.where(Segmentation.id == int(seg_id))
    seg = query.order_by(Segmentation.id.desc()).first()
    if seg is None:
        which = f"segmentation {seg_id}" if seg_id is not None else "a complete segmentation"
        raise LookupError(f"job {job.id} has no {which} to export")
    return write_labels(seg.path, fmt, out)


def _imagej_unit(unit: str) -> str:
    return {"um": "micron", "µm": "micron", "micrometre": "micron", "micrometer": "micron"}.get(unit, unit or "pixel")


def write_labels(path: str | Path, fmt: str, out: str | Path, slab: int = 32) -> list[Path]:
    """Write a label array (zarr) as tiff / png / zarr, slab by slab."""
    import numpy as np
    import zarr

    from app.pipeline.volume import default_compressor

    fmt = fmt.lower()
    if fmt not in SEGMENTATION_FORMATS:
        raise ValueError(f"a segmentation can be exported as {', '.join(SEGMENTATION_FORMATS)}, not {fmt!r}")
    array = zarr.open_array(str(path), mode="r")
    meta = dict(array.attrs.get("strata", {}))
    spacing = [float(s) for s in meta.get("spacing", (1.0, 1.0, 1.0))]
    unit = str(meta.get("unit", ""))
    nz = array.shape[0]
    out = Path(out)

    def slabs():
        for z0 in range(0, nz, slab):
            yield z0, np.asarray(array[z0 : min(nz, z0 + slab)])

    if fmt == "zarr":
        copy = zarr.create_array(
            str(out), shape=array.shape, chunks=array.chunks, dtype=np.uint8, fill_value=0,
            compressors=[default_compressor()], zarr_format=3, overwrite=True,
        )
        for z0, data in slabs():
            copy[z0 : z0 + len(data)] = data
        copy.attrs.update({"strata": {"spacing": spacing, "unit": unit, "classes": meta.get("classes", [])}})
        return [out]
    digits = max(4, len(str(nz - 1)))
    if fmt == "png":
        import imagecodecs

        out.mkdir(parents=True, exist_ok=True)
        for z0, data in slabs():
            for i, plane in enumerate(data):
                (out / f"segmentation_{z0 + i:0{digits}d}.png").write_bytes(imagecodecs.png_encode(plane))
        return [out]
    import tifffile

    resolution = (1.0 / spacing[2], 1.0 / spacing[1])
    if out.suffix.lower() in (".tif", ".tiff"):
        out.parent.mkdir(parents=True, exist_ok=True)

        def pages():
            for _z0, data in slabs():
                yield from data

        tifffile.imwrite(
            out, pages(), shape=tuple(array.shape), dtype=np.uint8, imagej=True, resolution=resolution,
            metadata={"spacing": spacing[0], "unit": _imagej_unit(unit), "axes": "ZYX"},
        )
        return [out]
    out.mkdir(parents=True, exist_ok=True)
    for z0, data in slabs():
        for i, plane in enumerate(data):
            tifffile.imwrite(
                out / f"segmentation_{z0 + i:0{digits}d}.tif", plane, imagej=True, resolution=resolution,
                metadata={"unit": _imagej_unit(unit)},
            )
    return [out]
