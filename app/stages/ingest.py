"""The import (UPLOADING) and conversion (CONVERTING) stages, and the sample job.

``import_job`` validates the job's sources, extracts a zip into the job's
``source/`` folder, and writes ``source/manifest.json`` (the ordered files and
what they hold). ``convert_job`` turns the manifest into ``volume.zarr``.
Both raise :class:`StageError` naming the file and the problem; the runner
turns that into the job's error status.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from app.core.progress import ProgressContext, StageError
from app.pipeline.sources import ScanSource, discover
from app.store.jobs import JobStore
from app.store.models import Job

MANIFEST = "manifest.json"
SAMPLE_NAME = "Sample fossil"
KIND_NAMES = {
    "slices": "folder of slices",
    "tiff_stack": "multi-page TIFF",
    "dicom": "DICOM series",
    "nrrd": "NRRD file",
    "nifti": "NIfTI file",
}


def manifest_path(store: JobStore, job_id: int) -> Path:
    return store.workspace.source_dir(job_id) / MANIFEST


def read_manifest(store: JobStore, job_id: int) -> ScanSource:
    """The import's manifest; StageError when it is missing or unreadable."""
    path = manifest_path(store, job_id)
    try:
        return ScanSource.from_manifest(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise StageError(f"{path}: missing (the import did not finish); import the job again") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StageError(f"{path}: unreadable manifest ({exc}); import the job again") from None


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def _shape_text(shape) -> str:
    return " x ".join(str(s) for s in shape)


def import_job(store: JobStore, job: Job, ctx: ProgressContext) -> str:
    """UPLOADING: validate the sources, extract zips, write the manifest and the job's metadata."""
    source_dir = store.workspace.source_dir(job.id)
    shutil.rmtree(source_dir, ignore_errors=True)  # a previous, failed attempt
    source_dir.mkdir(parents=True, exist_ok=True)
    ctx.report(0.0, "checking files")

    def progress(fraction: float, message: str) -> None:
        ctx.check_cancelled()
        ctx.report(0.95 * fraction, message)

    try:
        if not job.sources:
            raise StageError(f"job {job.id} ({job.name}): no files were given to import")
        found = discover(job.sources, extract_to=source_dir / "extracted", progress=progress)
        ctx.check_cancelled()
        notes = list(found.notes)
        user_spacing = tuple(float(s) for s in job.spacing) if job.spacing else None
        if user_spacing:
            if found.spacing and tuple(round(s, 9) for s in found.spacing) != tuple(round(s, 9) for s in user_spacing):
                notes.append(
                    f"voxel size {_spacing_text(user_spacing, job.unit)} as given, instead of the files' "
                    f"{_spacing_text(found.spacing, found.unit)}"
                )
            spacing, unit = user_spacing, job.unit or found.unit
        elif found.spacing:
            spacing, unit = found.spacing, found.unit
        else:
            spacing, unit = (1.0, 1.0, 1.0), job.unit or ""
            notes.append("the files carry no voxel size: 1 x 1 x 1 assumed (give one with --spacing)")
        manifest = found.to_manifest()
        manifest["notes"] = notes
        manifest["imported"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        _write_json(source_dir / MANIFEST, manifest)
    except BaseException:
        shutil.rmtree(source_dir, ignore_errors=True)
        raise
    store.update(
        job.id,
        shape=list(found.shape),
        dtype=found.dtype,
        spacing=[float(s) for s in spacing],
        unit=unit,
        note="; ".join(notes),
    )
    ctx.report(1.0, "imported")
    kind = KIND_NAMES.get(found.kind, found.kind)
    return f"imported a {kind}: {_shape_text(found.shape)} {found.dtype}"


def _spacing_text(spacing, unit: str) -> str:
    return " x ".join(f"{s:g}" for s in spacing) + (f" {unit}" if unit else "")


def convert_job(store: JobStore, job: Job, ctx: ProgressContext) -> str:
    """CONVERTING: the manifest's files -> the job's multiscale ``volume.zarr``."""
    from app.pipeline.convert import convert_source

    source = read_manifest(store, job.id)
    for name in source.files:
        if not os.path.exists(name):
            raise StageError(f"{name}: no longer exists (was it moved or removed after the import?)")
    volume_path = store.workspace.volume_path(job.id)
    shutil.rmtree(volume_path, ignore_errors=True)  # UPLOADED means no valid volume yet
    spacing = tuple(float(s) for s in job.spacing) if job.spacing else (source.spacing or (1.0, 1.0, 1.0))
    unit = job.unit if job.spacing else source.unit
    started = time.monotonic()
    volume = convert_source(source, volume_path, spacing, unit, ctx)
    seconds = time.monotonic() - started
    levels = len(volume.levels)
    return f"converted in {seconds:.1f} s: {_shape_text(volume.shape)} {volume.dtype}, {levels} level(s)"


# -- the sample ------------------------------------------------------------------
def create_sample_job(store: JobStore, name: str | None = None) -> Job:
    """A PENDING job whose source is the generated sample fossil (written once per workspace)."""
    from app.pipeline.sample import SAMPLE_SPACING, SAMPLE_UNIT, write_sample

    files = write_sample(store.workspace.root)
    return store.create_job(name or SAMPLE_NAME, [str(files.image)], SAMPLE_SPACING, SAMPLE_UNIT)


def sample_ground_truth_path(store: JobStore, job: Job | int) -> Path:
    """The ground-truth labels (ImageJ TIFF, uint8: 1 background, 2 specimen) of a sample job."""
    from app.pipeline.sample import labels_path_for, write_sample

    if not isinstance(job, Job):
        job = store.get(job)
    if not job.sources:
        raise StageError(f"job {job.id} ({job.name}) has no source files")
    path = labels_path_for(job.sources[0])
    if not path.is_file():
        if Path(job.sources[0]).parent != store.workspace.root / "samples":
            raise StageError(f"job {job.id} ({job.name}) is not a sample job: {path} does not exist")
        write_sample(store.workspace.root)
    return path
