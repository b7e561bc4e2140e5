"""Glue of the mesh stage: request a mesh version, run it, list it, export it.

A request creates a :class:`~app.store.models.Mesh` row (state ``queued``,
params: smoothing, decimation, segmentation id) and moves the job to
MESHING_QUEUED; the runner's "mesh" stage calls :func:`mesh_job`, which makes
the newest queued version. Surfaces are kept as binary PLY files in
``workspace.mesh_dir(job, segmentation, mesh)`` with a ``mesh.json`` of
their statistics. Exporting meshes marks the job DONE.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from app.core.progress import Cancelled, ProgressContext, StageError
from app.core.statuses import JobStatus, TransitionError, can_transition, parse_status
from app.store.jobs import JobStore
from app.store.models import Job, Mesh, Segmentation

S = JobStatus
EXPORT_FORMATS = ("stl", "obj", "ply", "glb")
#: Statuses from which a job may be meshed.
MESHABLE = frozenset({S.SEGMENTED, S.MESHED, S.DONE, S.MESH_ERROR})


class MeshExportError(StageError, OSError):
    """An export that could not be written (the message names the path and the problem)."""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text.strip()).strip("_") or "class"


def newest_segmentation(job_id: int) -> Segmentation | None:
    """The job's newest complete segmentation."""
    return (
        Segmentation.select()
        .where((Segmentation.job == int(job_id)) & (Segmentation.state == "complete"))
        .order_by(Segmentation.id.desc())
        .first()
    )


def request_mesh(
    store: JobStore,
    job_id: int,
    smooth: float | None = None,
    decimate: float | None = None,
    segmentation_id: int | None = None,
) -> Mesh:
    """Queue a new mesh version of a segmented job (MESHING_QUEUED)."""
    from app.pipeline.mesh import DEFAULT_DECIMATE, DEFAULT_SMOOTH

    job = store.get(job_id)
    smooth = DEFAULT_SMOOTH if smooth is None else float(smooth)
    decimate = DEFAULT_DECIMATE if decimate is None else float(decimate)
    if not 0.0 <= smooth <= 1.0:
        raise ValueError(f"smoothing must be between 0 (off) and 1, not {smooth}")
    if not 0.0 < decimate <= 1.0:
        raise ValueError(f"decimation keeps a fraction of triangles in (0, 1], not {decimate}")
    status = parse_status(job.status)
    if status not in MESHABLE:
        raise TransitionError(f"job {job.id} is {status.value!r}; it can be meshed once it is segmented")
    if segmentation_id is None:
        seg = newest_segmentation(job.id)
        if seg is None:
            raise LookupError(f"job {job.id} has no complete segmentation to mesh")
    else:
        seg = Segmentation.get_or_none((Segmentation.id == int(segmentation_id)) & (Segmentation.job == job.id))
        if seg is None or seg.state != "complete":
            raise LookupError(f"job {job.id} has no complete segmentation {segmentation_id}")
    with store.db.atomic():
        cancel_pending_mesh(job.id)  # an older request that never ran is superseded
        mesh = Mesh.create(
            job=job.id,
            segmentation=seg.id,
            params={"smooth": smooth, "decimate": decimate, "segmentation": seg.id},
            state="queued",
        )
        store.transition(job.id, S.MESHING_QUEUED, f"mesh {mesh.id} queued")
    return mesh


def _pending_mesh(job_id: int) -> Mesh | None:
    return (
        Mesh.select()
        .where((Mesh.job == int(job_id)) & (Mesh.state.in_(["queued", "running"])))
        .order_by(Mesh.id.desc())
        .first()
    )


def cancel_pending_mesh(job_id: int) -> None:
    """Mark a mesh request that never ran as cancelled."""
    Mesh.update(state="cancelled").where((Mesh.job == int(job_id)) & (Mesh.state == "queued")).execute()


def job_spacing(store: JobStore, job: Job) -> tuple[tuple[float, float, float], str]:
    """Voxel size (z, y, x) and unit of a job: its row, else its volume, else 1."""
    if job.spacing:
        return tuple(float(s) for s in job.spacing), job.unit or ""  # type: ignore[return-value]
    path = store.workspace.volume_path(job.id)
    if path.exists():
        from app.pipeline.volume import open_volume

        volume = open_volume(path)
        return volume.spacing, job.unit or volume.unit
    return (1.0, 1.0, 1.0), job.unit or ""


def segmentation_file(store: JobStore, seg: Segmentation) -> Path:
    return Path(seg.path) if seg.path else store.workspace.segmentation_path(seg.job_id, seg.id)


def _open_labels(path: Path):
    import zarr

    if not path.exists():
        raise StageError(f"{path}: the segmentation is missing on disk")
    try:
        labels = zarr.open_array(str(path), mode="r")
    except Exception as exc:  # noqa: BLE001 - any unreadable store is the user's file problem
        raise StageError(f"{path}: not a readable segmentation ({exc})") from exc
    if labels.ndim != 3 or not np.issubdtype(labels.dtype, np.integer):
        raise StageError(f"{path}: a segmentation must be a 3D integer array, not {labels.ndim}D {labels.dtype}")
    return labels


def mesh_job(store: JobStore, job: Job, ctx: ProgressContext) -> str | None:
    """The runner's "mesh" stage: make the newest queued mesh version of ``job``."""
    from app.pipeline.mesh import ClassSpec, mesh_labels

    mesh = _pending_mesh(job.id)
    if mesh is None:
        raise StageError(f"job {job.id} has no mesh request waiting")
    seg = Segmentation.get_or_none(Segmentation.id == mesh.segmentation_id) if mesh.segmentation_id else None
    if seg is None:
        _set_mesh(mesh, state="failed")
        raise StageError(f"mesh {mesh.id}: its segmentation no longer exists")
    out = store.workspace.mesh_dir(job.id, seg.id, mesh.id)
    _set_mesh(mesh, state="running", path=str(out))
    try:
        labels = _open_labels(segmentation_file(store, seg))
        if job.shape and list(labels.shape) != list(job.shape):
            raise StageError(
                f"{segmentation_file(store, seg)}: shape {tuple(labels.shape)} differs from the volume's {tuple(job.shape)}"
            )
        spacing, unit = job_spacing(store, job)
        classes = [
            ClassSpec(c.value, c.name, c.color) for c in store.label_classes(job.id) if not c.is_background
        ]
        if not classes:
            raise StageError(f"job {job.id} has no class besides background to mesh")
        params = mesh.params or {}
        result = mesh_labels(
            labels, spacing, classes, params.get("smooth", 0.5), params.get("decimate", 0.25), ctx.sub(0, 0.95)
        )
        ctx.check_cancelled()
        ctx.report(0.96, "writing surfaces")
        record = _write_version(out, mesh, seg, result, spacing, unit)
    except Cancelled:
        _set_mesh(mesh, state="cancelled")
        shutil.rmtree(out, ignore_errors=True)
        raise
    except OSError as exc:
        _set_mesh(mesh, state="failed")
        shutil.rmtree(out, ignore_errors=True)
        where = getattr(exc, "filename", None) or out
        raise StageError(f"{where}: could not write the meshes ({exc.strerror or exc})") from exc
    except BaseException:
        _set_mesh(mesh, state="failed")
        raise
    _set_mesh(mesh, state="complete", stats=record)
    ctx.report(1.0, "meshed")
    parts = [f"mesh {mesh.id}: {len(result.surfaces)} surface(s)"]
    parts.extend(result.notes)
    return "; ".join(parts)


def _set_mesh(mesh: Mesh, **fields: Any) -> None:
    Mesh.update(**fields).where(Mesh.id == mesh.id).execute()
    for key, value in fields.items():
        setattr(mesh, key, value)


def _write_version(out: Path, mesh: Mesh, seg: Segmentation, result, spacing, unit: str) -> dict[str, Any]:
    from app.pipeline.mesh_io import write_ply

    out.mkdir(parents=True, exist_ok=True)
    surfaces = []
    for surface in result.surfaces:
        name = f"{surface.value:02d}_{_slug(surface.name)}.ply"
        write_ply(out / name, [(surface.name, surface.points, surface.faces)])
        surfaces.append(
            {"value": surface.value, "name": surface.name, "color": surface.color, "file": name, "stats": surface.stats}
        )
    record = {
        "mesh": mesh.id,
        "segmentation": seg.id,
        "params": {**(mesh.params or {}), **result.params},
        "spacing": list(spacing),
        "unit": unit,
        "axes": "x, y, z = array x, y, z index * voxel size; arrays are (z, y, x)",
        "surfaces": surfaces,
        "notes": result.notes,
    }
    tmp = out / ".mesh.json.part"
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(out / "mesh.json")
    return record


# -- reading back ---------------------------------------------------------------


def complete_meshes(job_id: int) -> list[Mesh]:
    return list(
        Mesh.select().where((Mesh.job == int(job_id)) & (Mesh.state == "complete")).order_by(Mesh.id.desc())
    )


def find_mesh(job_id: int, mesh_id: int | None = None) -> Mesh:
    """A complete mesh version of a job (default: the newest)."""
    if mesh_id is not None:
        mesh = Mesh.get_or_none((Mesh.id == int(mesh_id)) & (Mesh.job == int(job_id)))
        if mesh is None or mesh.state != "complete":
            raise LookupError(f"job {job_id} has no complete mesh {mesh_id}")
        return mesh
    meshes = complete_meshes(job_id)
    if not meshes:
        raise LookupError(f"job {job_id} has no meshes yet; run `main.py mesh {job_id}` first")
    return meshes[0]


def load_surfaces(mesh: Mesh) -> list[tuple[dict[str, Any], np.ndarray, np.ndarray]]:
    """(surface record, points, triangles) of each surface of a mesh version."""
    from app.pipeline.mesh_io import read_ply

    loaded = []
    for record in (mesh.stats or {}).get("surfaces", []):
        path = Path(mesh.path) / record["file"]
        if not path.exists():
            raise StageError(f"{path}: a surface file of mesh {mesh.id} is missing")
        points, faces = read_ply(path)
        loaded.append((record, points, faces))
    return loaded


def mesh_info(store: JobStore, job: Job) -> dict[str, Any]:
    """Mesh versions of a job with their surfaces' stats and file paths (``meshes --json``)."""
    versions = []
    for mesh in Mesh.select().where(Mesh.job == job.id).order_by(Mesh.id):
        stats = mesh.stats or {}
        versions.append({
            "id": mesh.id,
            "segmentation": mesh.segmentation_id,
            "state": mesh.state,
            "params": mesh.params,
            "path": mesh.path,
            "unit": stats.get("unit", job.unit),
            "surfaces": [
                {**{k: v for k, v in s.items() if k != "file"}, "file": str(Path(mesh.path) / s["file"])}
                for s in stats.get("surfaces", [])
            ],
            "notes": stats.get("notes", []),
        })
    return {"job": job.id, "name": job.name, "status": job.status, "meshes": versions}


# -- export ------------------------------------------------------------------------


def export_meshes(store: JobStore, job: Job, fmt: str, out: str | Path, args: Any = None) -> list[Path]:
    """Write a mesh version's surfaces as ``fmt`` into folder ``out``; marks the job DONE.

    One file per class, or one file for all with ``args.combined``. Files are
    written whole or not at all; on failure nothing older is touched.
    """
    from app.pipeline.mesh_io import write_surface_file

    fmt = fmt.lower()
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"meshes can be exported as {', '.join(EXPORT_FORMATS)}, not {fmt!r}")
    mesh = find_mesh(job.id, getattr(args, "id", None))
    surfaces = load_surfaces(mesh)
    if not surfaces:
        raise LookupError(f"mesh {mesh.id} of job {job.id} has no surfaces (every class was empty)")
    folder = Path(out).expanduser()
    base = _slug(job.name)
    written: list[Path] = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if getattr(args, "combined", False):
            parts = [(r["name"], p, f) for r, p, f in surfaces]
            colors = [r["color"] for r, _, _ in surfaces]
            written.append(write_surface_file(folder / f"{base}_mesh{mesh.id}.{fmt}", fmt, parts, colors))
        else:
            for record, points, faces in surfaces:
                path = folder / f"{base}_{_slug(record['name'])}.{fmt}"
                written.append(write_surface_file(path, fmt, [(record["name"], points, faces)], [record["color"]]))
    except OSError as exc:
        where = exc.filename or folder
        raise MeshExportError(f"{where}: could not export the meshes ({exc.strerror or exc})") from exc
    status = parse_status(store.get(job.id).status)
    if status in (S.SEGMENTED, S.MESHED) and can_transition(status, S.DONE):
        store.transition(job.id, S.DONE, f"meshes exported to {folder}")
    return written
