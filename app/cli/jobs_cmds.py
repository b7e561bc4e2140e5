"""Subcommands for jobs: new, sample, run, jobs, status, rename, delete, cancel."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
from pathlib import Path

from app.cli import CliError
from app.cli.common import TerminalBar, job_command, open_store, print_json
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

    p = job_command(sub, common, "status", "one job and its timeline")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_status)

    p = job_command(sub, common, "rename", "rename a job")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(handler=cmd_rename)

    p = job_command(sub, common, "delete", "delete a job and its files")
    p.set_defaults(handler=cmd_delete)

    p = job_command(sub, common, "cancel", "take a queued job out of its queue")
    p.set_defaults(handler=cmd_cancel)


def _default_name(sources: list[str]) -> str:
    from app.pipeline.sources import default_job_name

    return default_job_name(sources)


def _run_with_bar(store, job_id: int, follow: bool, quiet: bool = False, ctx=None, bar=None) -> JobStatus:
    """Run a job's waiting stage(s) with a progress bar; the first Ctrl+C cancels cleanly."""
    from app.core.progress import ProgressContext
    from app.runner import Runner

    if bar is None and not quiet:
        bar = TerminalBar(f"job {job_id}")
    if ctx is None:
        ctx = bar.context() if bar else ProgressContext()
    with _cancel_on_interrupt(ctx):
        try:
            return Runner(store).run_job(job_id, ctx, follow=follow)
        finally:
            if bar:
                bar.close()


@contextlib.contextmanager
def _cancel_on_interrupt(ctx):
    """While a stage runs, Ctrl+C cancels it (the job goes back to its previous status);
    a second Ctrl+C interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if ctx.cancelled:
            raise KeyboardInterrupt
        print("\ncancelling (Ctrl+C again to stop at once)...", file=sys.stderr)
        ctx.cancel()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def cmd_new(args: argparse.Namespace) -> int:
    from app.pipeline.sources import normalize_unit

    if args.spacing and any(not value > 0 for value in args.spacing):
        raise CliError(f"--spacing needs three positive numbers (z y x), got {' '.join(map(str, args.spacing))}")
    store = open_store(args)
    name = args.name or _default_name(args.sources)
    sources = [str(Path(s).expanduser().absolute()) for s in args.sources]  # `run` may start elsewhere
    spacing = tuple(args.spacing) if args.spacing else None
    job = store.create_job(name, sources, spacing, normalize_unit(args.unit))
    print(job.id)
    sys.stdout.flush()
    status = _run_with_bar(store, job.id, follow=False, quiet=not sys.stderr.isatty())
    return _report_outcome(store, job.id, status)


def _report_outcome(store, job_id: int, status: JobStatus) -> int:
    """Exit code of ``new``/``sample``: 1 with the job's message as one line on stderr on failure."""
    if status in ERRORS:
        message = " ".join(store.get(job_id).message.split())
        print(f"error: job {job_id} ({status.value}): {message}", file=sys.stderr)
        return 1
    if status is JobStatus.PENDING:
        print(f"error: job {job_id}: the import was cancelled", file=sys.stderr)
        return 1
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from app.stages.ingest import create_sample_job

    store = open_store(args)
    job = create_sample_job(store, args.name)
    print(job.id)
    sys.stdout.flush()
    status = _run_with_bar(store, job.id, follow=False, quiet=not sys.stderr.isatty())
    return _report_outcome(store, job.id, status)


def cmd_run(args: argparse.Namespace) -> int:
    """Run queued work: recover interrupted jobs, then run each waiting job's stages."""
    from app.runner import Runner

    store = open_store(args)
    runner = Runner(store)
    for job_id in runner.recover():
        print(f"job {job_id}: interrupted earlier, queued again", file=sys.stderr)
    failures = 0
    tried: set[int] = set()
    while True:
        pending = [j for j in runner.queued_jobs() if j not in tried]
        if not pending:
            if args.until_idle:
                break
            time.sleep(2.0)
            continue
        job_id = pending[0]
        tried.add(job_id)
        bar = TerminalBar(f"job {job_id}")
        ctx = bar.context()
        status = _run_with_bar(store, job_id, follow=True, ctx=ctx, bar=bar)
        if ctx.cancelled:
            print(f"job {job_id}: cancelled, back to {status.value}", file=sys.stderr)
            return 130
        if status in ERRORS:
            failures += 1
            message = " ".join(store.get(job_id).message.split())
            print(f"error: job {job_id} ({status.value}): {message}", file=sys.stderr)
        else:
            print(f"job {job_id}: {status.value}", file=sys.stderr)
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
    from app.core.statuses import RUNNING, parse_status
    from app.store.jobs import pid_alive

    job = store.find(args.job)
    status = parse_status(job.status)
    if status in RUNNING:
        if pid_alive(job.owner_pid):
            raise CliError(
                f"job {job.id} is {status.value} in process {job.owner_pid}; press Ctrl+C there "
                f"(or cancel it in the window) to cancel it"
            )
        Runner(store).recover()
        print(f"job {job.id}: was left {status.value} by a stopped process; now {store.get(job.id).status}",
              file=sys.stderr)
        return 0
    Runner(store).cancel_queued(job.id)
    return 0
