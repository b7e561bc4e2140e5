"""Subcommands for jobs: new, sample, run, jobs, status, rename, delete, cancel."""

from __future__ import annotations

import argparse
import sys
import time

from app.cli.common import TerminalBar, open_store, print_json
from app.core.statuses import ERRORS, JobStatus


def register(sub, common) -> None:
    p = sub.add_parser("new", parents=[common], help="create a job from a folder, files or a zip")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="folder of slices, file(s) or zip")
    p.add_argument("--name", help="job name (default: from the first source)")
    p.add_argument("--spacing", nargs=3, type=float, metavar=("Z", "Y", "X"), help="voxel size")
    p.add_argument("--unit", default="", help="unit of the voxel size, e.g. um")
    p.set_defaults(handler=cmd_new)

    p = sub.add_parser("sample", parents=[common], help="create a job from the bundled sample")
    p.add_argument("--name", default=None, help="job name (default: Sample fossil)")
    p.set_defaults(handler=cmd_sample)

    p = sub.add_parser("run", parents=[common], help="run queued work (conversion, training, ...)")
    p.add_argument("--until-idle", action="store_true", help="stop when nothing is left to do")
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("jobs", parents=[common], help="list jobs")
    p.add_argument("--json", action="store_true", help="one JSON object per job")
    p.set_defaults(handler=cmd_jobs)

    p = sub.add_parser("status", parents=[common], help="one job and its timeline")
    p.add_argument("job", metavar="JOB", help="job id or name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_status)

    p = sub.add_parser("rename", parents=[common], help="rename a job")
    p.add_argument("job", metavar="JOB")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(handler=cmd_rename)

    p = sub.add_parser("delete", parents=[common], help="delete a job and its files")
    p.add_argument("job", metavar="JOB")
    p.set_defaults(handler=cmd_delete)

    p = sub.add_parser("cancel", parents=[common], help="take a queued job out of its queue")
    p.add_argument("job", metavar="JOB")
    p.set_defaults(handler=cmd_cancel)


def _default_name(sources: list[str]) -> str:
    from app.pipeline.sources import default_job_name

    return default_job_name(sources)


def _run_with_bar(store, job_id: int, follow: bool) -> JobStatus:
    from app.runner import Runner

    bar = TerminalBar(f"job {job_id}")
    try:
        return Runner(store).run_job(job_id, bar.context(), follow=follow)
    finally:
        bar.close()


def cmd_new(args: argparse.Namespace) -> int:
    store = open_store(args)
    name = args.name or _default_name(args.sources)
    job = store.create_job(name, args.sources, tuple(args.spacing) if args.spacing else None, args.unit)
    print(job.id)
    sys.stdout.flush()
    status = _run_with_bar(store, job.id, follow=False)
    if status in ERRORS:
        print(f"error: {store.get(job.id).message}", file=sys.stderr)
        return 1
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from app.stages.ingest import create_sample_job

    store = open_store(args)
    job = create_sample_job(store, args.name)
    print(job.id)
    sys.stdout.flush()
    status = _run_with_bar(store, job.id, follow=False)
    if status in ERRORS:
        print(f"error: {store.get(job.id).message}", file=sys.stderr)
        return 1
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from app.runner import Runner

    store = open_store(args)
    runner = Runner(store)
    recovered = runner.recover()
    for job_id in recovered:
        print(f"job {job_id}: interrupted earlier, queued again", file=sys.stderr)
    failures = 0
    while True:
        for job_id in runner.queued_jobs():
            status = _run_with_bar(store, job_id, follow=True)
            job = store.get(job_id)
            if status in ERRORS:
                failures += 1
                print(f"error: job {job_id} ({status.value}): {job.message}", file=sys.stderr)
            else:
                print(f"job {job_id}: {status.value}", file=sys.stderr)
            if not args.until_idle:
                break
        if args.until_idle and not runner.queued_jobs():
            break
        if not args.until_idle:
            time.sleep(2.0)
    return 1 if failures else 0


def _job_line(summary: dict) -> str:
    shape = "x".join(str(s) for s in summary["shape"]) if summary["shape"] else "-"
    spacing = (
        " ".join(f"{s:g}" for s in summary["spacing"]) + f" {summary['unit']}".rstrip()
        if summary["spacing"]
        else "-"
    )
    progress = f"{summary['progress'] * 100:3.0f}%"
    return (
        f"{summary['id']:>4}  {summary['name'][:28]:<28}  {summary['status']:<16}{progress:>5}  "
        f"{shape:<16} {summary['dtype'] or '-':<8} {spacing}"
    )


def cmd_jobs(args: argparse.Namespace) -> int:
    store = open_store(args)
    summaries = [store.summary(job) for job in store.list_jobs()]
    if args.json:
        print_json(summaries)
        return 0
    if not summaries:
        print("no jobs yet: try `main.py sample` or `main.py new FOLDER`")
        return 0
    print(f"{'id':>4}  {'name':<28}  {'status':<16}{'prog':>5}  {'shape (z y x)':<16} {'dtype':<8} voxel size")
    for summary in summaries:
        print(_job_line(summary))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    store = open_store(args)
    job = store.find(args.job)
    summary = store.summary(job)
    timeline = [entry.__dict__ for entry in store.timeline(job.id)]
    if args.json:
        print_json({**summary, "timeline": timeline})
        return 0
    print(_job_line(summary))
    if summary["message"]:
        print(f"message: {summary['message']}")
    if summary["note"]:
        print(f"note: {summary['note']}")
    print(f"folder: {summary['path']}")
    print("timeline:")
    for entry in timeline:
        arrow = f"{entry['from_status'] or '':>16} -> {entry['to_status']:<16}"
        print(f"  {entry['time']}  {arrow} {entry['message']}")
    return 0


def cmd_rename(args: argparse.Namespace) -> int:
    store = open_store(args)
    job = store.find(args.job)
    store.rename(job.id, args.name)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    store = open_store(args)
    job = store.find(args.job)
    store.delete(job.id)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from app.runner import Runner

    store = open_store(args)
    job = store.find(args.job)
    Runner(store).cancel_queued(job.id)
    return 0
