"""``main.py export JOB --what annotations|segmentation|meshes --format F --out PATH``.

Each kind of export is a function ``export(store, job, fmt, out, args) -> list[Path]``
in its own module, looked up in :data:`EXPORTERS` and imported lazily.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from app.cli import CliError
from app.cli.common import job_command, open_store

#: what -> ("module:function", formats)
EXPORTERS: dict[str, tuple[str, tuple[str, ...]]] = {}
EXPORTERS["annotations"] = ("app.cli.annotate_cmds:export_annotations", ("tiff", "zarr", "npy"))
EXPORTERS["meshes"] = ("app.stages.mesh:export_meshes", ("stl", "obj", "ply", "glb"))
EXPORTERS["segmentation"] = ("app.stages.segment:export_segmentation", ("tiff", "png", "zarr"))


def register(sub, common) -> None:
    p = job_command(sub, common, "export", "export annotations, a segmentation or meshes")
    p.add_argument("--what", required=True, choices=["annotations", "segmentation", "meshes"])
    p.add_argument("--format", required=True, help="tiff, png, zarr, npy, stl, obj, ply, ...")
    p.add_argument("--out", required=True, help="output file or folder")
    p.add_argument("--id", type=int, default=None, help="segmentation or mesh id (default: newest)")
    p.add_argument("--combined", action="store_true", help="meshes: all surfaces in one file")
    p.add_argument("--slices", metavar="AXIS:I,J,K", default=None,
                   help="annotations: only these slices of one plane, e.g. z:10,20 (the rest written as 0)")
    p.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    if args.what not in EXPORTERS:
        raise CliError(f"exporting {args.what} is not available yet")
    target, formats = EXPORTERS[args.what]
    fmt = args.format.lower()
    if fmt not in formats:
        raise CliError(f"{args.what} can be exported as {', '.join(formats)}, not {args.format!r}")
    store = open_store(args)
    job = store.find(args.job)
    module, _, name = target.partition(":")
    written = getattr(importlib.import_module(module), name)(store, job, fmt, args.out, args)
    for path in written:
        print(path)
    sys.stdout.flush()
    return 0
