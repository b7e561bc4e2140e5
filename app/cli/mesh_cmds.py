"""``main.py mesh JOB [--smooth S] [--decimate F]`` and ``main.py meshes JOB [--json]``."""

from __future__ import annotations

import argparse
import signal
import sys

from app.cli import CliError
from app.cli.common import TerminalBar, job_command, open_store, print_json


def register(sub, common) -> None:
    """Add the mesh subcommands."""
    p = job_command(sub, common, "mesh", "make closed surfaces of a segmented job")
    p.add_argument("--smooth", type=float, default=None, metavar="S",
                   help="smoothing strength, 0 (off) to 1 (default 0.5)")
    p.add_argument("--decimate", type=float, default=None, metavar="F",
                   help="fraction of triangles to keep, (0, 1] (default 0.25; 1 = no decimation)")
    p.add_argument("--segmentation", type=int, default=None, metavar="ID",
                   help="segmentation id (default: the newest complete one)")
    p.set_defaults(handler=cmd_mesh)

    p = job_command(sub, common, "meshes", "list a job's meshes: stats and file paths")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_meshes)


def cmd_mesh(args: argparse.Namespace) -> int:
    from app.core.statuses import JobStatus
    from app.runner import Runner
    from app.stages.mesh import mesh_info, request_mesh

    store = open_store(args)
    job = store.find(args.job)
    mesh = request_mesh(store, job.id, args.smooth, args.decimate, args.segmentation)
    bar = TerminalBar(f"mesh {job.id}")
    ctx = bar.context()
    previous = signal.signal(signal.SIGINT, lambda *_: ctx.cancel())
    try:
        status = Runner(store).run_job(job.id, ctx, follow=False)
    finally:
        signal.signal(signal.SIGINT, previous)
        bar.close()
    job = store.get(job.id)
    if ctx.cancelled:
        raise CliError(f"meshing cancelled; job {job.id} is back to {job.status!r}", 130)
    if status is not JobStatus.MESHED:
        raise CliError(job.message or f"meshing ended in {status.value!r}")
    info = mesh_info(store, job)
    version = next(v for v in info["meshes"] if v["id"] == mesh.id)
    _print_version(version)
    return 0


def _print_version(version: dict) -> None:
    unit = version.get("unit") or "units"
    print(f"mesh {version['id']} ({version['state']}) of segmentation {version['segmentation']}: {version['path']}")
    for s in version["surfaces"]:
        st = s["stats"]
        closed = "closed" if st.get("closed") else f"OPEN ({st.get('boundary_edges')} boundary, {st.get('nonmanifold_edges')} non-manifold edges)"
        print(
            f"  {s['name']:<16} {st['triangles']:>9} triangles  area {st['area']:.6g} {unit}^2  "
            f"volume {st['volume']:.6g} {unit}^3  {st['pieces']} piece(s)  {closed}  {s['file']}"
        )
    for note in version.get("notes", []):
        print(f"  note: {note}")


def cmd_meshes(args: argparse.Namespace) -> int:
    from app.stages.mesh import mesh_info

    store = open_store(args)
    job = store.find(args.job)
    info = mesh_info(store, job)
    if args.json:
        print_json(info)
        return 0
    if not info["meshes"]:
        print(f"job {job.id} has no meshes yet")
        return 0
    for version in info["meshes"]:
        _print_version(version)
    sys.stdout.flush()
    return 0
