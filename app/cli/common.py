"""Helpers shared by the subcommands: the store, a terminal progress bar, JSON output."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, TextIO

from app.core.progress import ProgressContext
from app.store.jobs import JobStore


def open_store(args) -> JobStore:
    return JobStore(getattr(args, "workspace", None))


def job_command(sub, common, name: str, help: str):
    """A subcommand whose first argument is a job (id or name)."""
    parser = sub.add_parser(name, parents=[common], help=help)
    parser.add_argument("job", metavar="JOB", help="job id or name")
    return parser


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


class TerminalBar:
    """A one-line progress bar on stderr (plain lines when it is not a terminal)."""

    WIDTH = 30

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last = -1.0
        self._last_time = 0.0
        self._lock = threading.Lock()

    def update(self, fraction: float, message: str = "") -> None:
        with self._lock:
            now = time.monotonic()
            if self.tty:
                if now - self._last_time < 0.1 and fraction < 1.0:
                    return
                filled = int(self.WIDTH * fraction)
                bar = "#" * filled + "-" * (self.WIDTH - filled)
                self.stream.write(f"\r{self.label} [{bar}] {fraction * 100:5.1f}% {message[:40]:<40}")
                self.stream.flush()
            elif fraction - self._last >= 0.1 or fraction >= 1.0 and self._last < 1.0:
                self.stream.write(f"{self.label}: {fraction * 100:5.1f}% {message}\n")
                self.stream.flush()
            self._last = fraction
            self._last_time = now

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def context(self) -> ProgressContext:
        return ProgressContext(self.update)
