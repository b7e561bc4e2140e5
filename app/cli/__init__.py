"""Command line: ``main.py SUBCOMMAND ...``. The same stages and statuses as the window."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from app import __version__

#: Modules that each add subcommands with ``register(subparsers, common)``.
COMMAND_MODULES = (
    "app.cli.jobs_cmds",
    "app.cli.annotate_cmds",
    "app.cli.train_cmds",
    "app.cli.mesh_cmds",
    "app.cli.export_cmd",
)


class CliError(Exception):
    """A failure reported as one line on stderr with a non-zero exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    import importlib

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--workspace",
        metavar="DIR",
        help="workspace folder (default: $STRATA_HOME or the user data folder)",
    )
    parser = argparse.ArgumentParser(
        prog="main.py",
        description="Strata: tomography scans to labelled volumes and meshes. "
        "Without a subcommand, the window opens.",
    )
    parser.add_argument("--version", action="version", version=f"Strata {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    gui = sub.add_parser("gui", parents=[common], help="open the window (the default)")
    gui.add_argument(
        "--with-sample", action="store_true", help="create the sample job first if the workspace has none"
    )
    gui.set_defaults(handler=_run_gui)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub, common)
    return parser


def _run_gui(args: argparse.Namespace) -> int:
    from app.gui.main import run_gui

    return run_gui(args.workspace, with_sample=getattr(args, "with_sample", False))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        return _run_gui(argparse.Namespace(workspace=None))
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except (LookupError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
