"""Subcommands for annotations: ``annotate`` (import a label volume) and ``classes``.

Also the ``export --what annotations`` exporter (:func:`export_annotations`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from app.cli import CliError
from app.cli.common import TerminalBar, job_command, open_store, print_json
from app.core.progress import StageError


def register(sub, common) -> None:
    p = job_command(
        sub, common, "annotate",
        "import a label volume (TIFF stack, multi-page TIFF, zarr, npy) as annotations",
    )
    p.add_argument("--labels", required=True, metavar="PATH", help="label volume of the volume's shape")
    p.add_argument(
        "--slices", metavar="AXIS:I,J,K",
        help="import only these slices of one plane, e.g. z:10,20,30 or y:5-8 (default: all of it)",
    )
    p.add_argument(
        "--map", nargs="+", action="extend", default=[], metavar="SRC=DST",
        help="map label value SRC to class value DST (0 drops it); unmapped values must be class values",
    )
    p.set_defaults(handler=cmd_annotate)

    p = job_command(sub, common, "classes", "list a job's label classes, or add one")
    p.add_argument("--add", metavar="NAME", help="add a class with the next value and a new colour")
    p.add_argument("--color", metavar="#RRGGBB", help="colour of the class added with --add")
    p.add_argument("--json", action="store_true", help="print the classes as JSON")
    p.set_defaults(handler=cmd_classes)


def cmd_annotate(args: argparse.Namespace) -> int:
    from app.pipeline.annotations import parse_mapping, parse_slices
    from app.stages.annotation import import_job_labels

    store = open_store(args)
    job = store.find(args.job)
    bar = TerminalBar(f"import {Path(args.labels).name}")
    try:
        slices = parse_slices(args.slices) if args.slices else None
        mapping = parse_mapping(args.map)
        written = import_job_labels(store, job, args.labels, slices, mapping, bar.context())
    except StageError as exc:
        raise CliError(str(exc)) from None
    finally:
        bar.close()
    summary = store.summary(job.id)
    counts = ", ".join(f"{name} {n}" for name, n in summary["annotated_voxels"].items())
    print(f"job {job.id}: imported {written} labelled voxels; status {summary['status']}; voxels per class: {counts}")
    return 0


def cmd_classes(args: argparse.Namespace) -> int:
    from app.store.label_classes import ClassError, add_class, list_classes

    store = open_store(args)
    job = store.find(args.job)
    if args.add:
        try:
            added = add_class(store, job.id, args.add, args.color)
        except ClassError as exc:
            raise CliError(str(exc)) from None
        if not args.json:
            print(f"added class {added.value} {added.name!r} ({added.color})")
    classes = [
        {"value": c.value, "name": c.name, "color": c.color, "background": c.is_background,
         "annotated_voxels": int(c.voxel_count)}
        for c in list_classes(store, job.id)
    ]
    if args.json:
        print_json(classes)
    else:
        for c in classes:
            flag = " (background)" if c["background"] else ""
            print(f"{c['value']:>3}  {c['color']}  {c['name']}{flag}  {c['annotated_voxels']} voxels")
    return 0


def export_annotations(store, job, fmt: str, out: str, args=None) -> list[Path]:
    """The ``export --what annotations`` exporter (tiff, zarr, npy; ``--slices AXIS:I,J,K`` for some slices only)."""
    from app.stages.annotation import export_job_annotations

    slices = getattr(args, "slices", None)
    bar = TerminalBar(f"export annotations as {fmt}")
    try:
        if slices:
            return _export_slices(store, job, fmt, out, slices, bar.context())
        return export_job_annotations(store, job, fmt, out, bar.context())
    except StageError as exc:
        raise CliError(str(exc)) from None
    finally:
        bar.close()


def _export_slices(store, job, fmt: str, out: str, slices: str, ctx) -> list[Path]:
    """Only the slices ``slices`` ('z:1,2') of one plane; the rest of the volume is written as 0."""
    from app.pipeline.annotations import export_annotations as write, parse_slices
    from app.stages.annotation import job_annotations

    axis, indices = parse_slices(slices)
    path = store.workspace.annotations_path(job.id)
    if not (path / "zarr.json").is_file():
        raise StageError(f"job {job.id} ({job.name}) has no annotations yet: nothing to export")
    return write(job_annotations(store, job, create=False), fmt, out, ctx, axis=axis, indices=indices)
