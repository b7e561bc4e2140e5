"""``main.py train``, ``main.py segment`` and ``main.py models``."""

from __future__ import annotations

import argparse
import signal

from app.cli import CliError
from app.cli.common import TerminalBar, job_command, open_store, print_json


def register(sub, common) -> None:
    """Add the training and segmentation subcommands."""
    p = job_command(sub, common, "train", "train a model on the paint, then segment the volume")
    p.add_argument("--model", choices=["quick", "deep"], default="quick",
                   help="quick: random forest on filter features (seconds); deep: a 2D U-Net (minutes)")
    p.add_argument("--scales", default=None, metavar="S,S,...",
                   help="feature scales in voxels for the quick model (default 0.7,1.6,3.5,5)")
    p.add_argument("--mode", choices=["2d", "3d"], default=None,
                   help="quick model features per z-plane (2d, default) or in 3D")
    p.add_argument("--epochs", type=int, default=None, metavar="N",
                   help="deep model: at most N epochs of 50 steps (default 12; stops early on held-out paint)")
    p.add_argument("--slices", type=int, default=None, metavar="K",
                   help="deep model: neighbouring slices given as channels (odd, default 5)")
    _add_cleanup(p)
    p.add_argument("--no-segment", action="store_true", help="train only; segment later with `segment`")
    p.set_defaults(handler=cmd_train)

    p = job_command(sub, common, "segment", "segment the whole volume with a trained model")
    p.add_argument("--model", type=int, default=None, metavar="MODEL_ID",
                   help="model id, of this job or another (default: the job's newest)")
    _add_cleanup(p)
    p.set_defaults(handler=cmd_segment)

    p = job_command(sub, common, "models", "list a job's models with held-out metrics")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_models)


def _add_cleanup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--min-size", type=int, default=0, metavar="N",
                   help="remove pieces smaller than N voxels from each class")
    p.add_argument("--fill-holes", action="store_true", help="fill holes enclosed by a class")
    p.add_argument("--keep-largest", action="store_true", help="keep only the largest piece of each class")


def _cleanup(args) -> dict:
    if args.min_size < 0:
        raise CliError("--min-size must be 0 or more")
    return {"min_size": args.min_size, "fill_holes": args.fill_holes, "keep_largest": args.keep_largest}


def _run(store, job_id: int, label: str, follow: bool = True):
    from app.runner import Runner

    bar = TerminalBar(label)
    ctx = bar.context()
    previous = signal.signal(signal.SIGINT, lambda *_: ctx.cancel())
    try:
        status = Runner(store).run_job(job_id, ctx, follow=follow)
    finally:
        signal.signal(signal.SIGINT, previous)
        bar.close()
    return status, ctx


def cmd_train(args: argparse.Namespace) -> int:
    from app.core.statuses import JobStatus
    from app.pipeline.features import parse_scales
    from app.stages.train import request_training
    from app.store.models import Model

    store = open_store(args)
    job = store.find(args.job)
    params: dict = {"cleanup": _cleanup(args)}
    if args.model == "quick":
        if args.scales is not None:
            params["scales"] = list(parse_scales(args.scales))
        if args.mode:
            params["mode"] = args.mode
        if args.epochs is not None or args.slices is not None:
            raise CliError("--epochs and --slices are for --model deep")
    else:
        if args.scales is not None or args.mode:
            raise CliError("--scales and --mode are for --model quick")
        if args.epochs is not None:
            if args.epochs < 1:
                raise CliError("--epochs must be at least 1")
            params["epochs"] = args.epochs
        if args.slices is not None:
            if args.slices < 1 or args.slices % 2 == 0:
                raise CliError("--slices must be an odd number (1, 3, 5, ...)")
            params["slices"] = args.slices
    row = request_training(store, job.id, args.model, params)
    status, ctx = _run(store, job.id, f"train {job.id}", follow=not args.no_segment)
    job = store.get(job.id)
    row = Model.get_by_id(row.id)
    if ctx.cancelled:
        raise CliError(f"cancelled; job {job.id} is back to {job.status!r}", 130)
    if row.state != "ready":
        raise CliError(job.message or f"training ended in {status.value!r}")
    _print_model(_model_info(row))
    if args.no_segment:
        return 0
    if status is not JobStatus.SEGMENTED:
        raise CliError(job.message or f"segmentation ended in {status.value!r}")
    _print_segmentation(store, job.id)
    return 0


def cmd_segment(args: argparse.Namespace) -> int:
    from app.core.statuses import JobStatus
    from app.stages.segment import request_segmentation

    store = open_store(args)
    job = store.find(args.job)
    try:
        request_segmentation(store, job.id, args.model, _cleanup(args))
    except Exception as exc:  # noqa: BLE001 - clear one-line message
        from app.core.progress import StageError

        if isinstance(exc, (StageError, LookupError, ValueError)):
            raise CliError(str(exc)) from exc
        raise
    status, ctx = _run(store, job.id, f"segment {job.id}")
    job = store.get(job.id)
    if ctx.cancelled:
        raise CliError(f"cancelled; job {job.id} is back to {job.status!r}", 130)
    if status is not JobStatus.SEGMENTED:
        raise CliError(job.message or f"segmentation ended in {status.value!r}")
    _print_segmentation(store, job.id)
    return 0


def _print_segmentation(store, job_id: int) -> None:
    from app.store.models import Segmentation

    seg = Segmentation.select().where(Segmentation.job == job_id).order_by(Segmentation.id.desc()).first()
    if seg is not None:
        print(f"segmentation {seg.id} ({seg.state}) with model {seg.model_id}: {seg.path}")


def _model_info(row) -> dict:
    return {
        "id": row.id,
        "job": row.job_id,
        "kind": row.kind,
        "state": row.state,
        "params": row.params,
        "paint_voxels": row.n_voxels,
        "paint_slices": row.n_slices,
        "metrics": row.metrics,
        "path": row.path,
        "created": row.created.isoformat(timespec="seconds") + "Z" if row.created else None,
    }


def models_info(store, job_id: int) -> list[dict]:
    """The job's models as plain data (``models --json``)."""
    from app.store.models import Model

    return [_model_info(m) for m in Model.select().where(Model.job == job_id).order_by(Model.id)]


def _print_model(info: dict) -> None:
    metrics = info.get("metrics") or {}
    print(
        f"model {info['id']} {info['kind']} ({info['state']}), paint {info['paint_voxels']} voxels "
        f"on {info['paint_slices']} slice(s), created {info['created']}: {info['path'] or '-'}"
    )
    held = metrics.get("held_out")
    if held:
        split = metrics.get("held_out_split", "")
        for value, s in held.items():
            print(f"  held-out ({split}) class {value}: Dice {s['dice']:.3f}  IoU {s['iou']:.3f}")
    elif info["state"] == "ready":
        print("  held-out: not enough painted slices to hold any out")
    train = metrics.get("training")
    if train:
        line = ", ".join(f"class {k} Dice {v['dice']:.3f}" for k, v in train.items())
        print(f"  on the training paint (not a measure of accuracy): {line}")


def cmd_models(args: argparse.Namespace) -> int:
    store = open_store(args)
    job = store.find(args.job)
    infos = models_info(store, job.id)
    if args.json:
        print_json(infos)
        return 0
    if not infos:
        print(f"job {job.id} has no models yet")
    for info in infos:
        _print_model(info)
    return 0
