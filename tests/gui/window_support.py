"""Fixtures and small real stages for the main-window tests.

The window is tested with the app's real runner, scheduler, store and volume
format. Until a test needs the pipeline's own import and conversion, jobs are
made from ``.npy`` files by the two small stages below, which write a real
multiscale volume; ``slow`` ones report progress and honour cancel step by step.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from app.core.progress import StageError
from app.core.statuses import JobStatus as S
from app.runner import Stage

#: Seconds the test conversion sleeps per step (tests that cancel raise it).
STEP_SECONDS = {"value": 0.0}
STEPS = 20


def import_npy(store, job, ctx):
    """Import: every source must be a readable .npy file; shape and dtype go on the job."""
    if not job.sources:
        raise StageError("no source was given")
    path = Path(job.sources[0])
    if not path.exists():
        raise StageError(f"{path}: the file does not exist")
    try:
        data = np.load(path, mmap_mode="r")
    except Exception as exc:  # noqa: BLE001
        raise StageError(f"{path}: not a readable array ({exc})") from None
    ctx.report(1.0, "listed")
    store.update(job.id, shape=list(data.shape), dtype=str(data.dtype))
    return f"1 file: {path.name}"


def convert_npy(store, job, ctx):
    """Convert: the .npy array becomes volume.zarr, in steps that can be cancelled."""
    from app.pipeline.volume import write_volume

    path = Path(job.sources[0])
    data = np.load(path)
    for step in range(STEPS):
        ctx.check_cancelled()
        ctx.report(step / STEPS, f"writing step {step + 1} of {STEPS}")
        time.sleep(STEP_SECONDS["value"])
    ctx.check_cancelled()
    spacing = tuple(job.spacing) if job.spacing else (1.0, 1.0, 1.0)
    write_volume(store.workspace.volume_path(job.id), data, spacing, job.unit or "")
    store.update(job.id, shape=list(data.shape), dtype=str(data.dtype), spacing=list(spacing))
    ctx.report(1.0, "done")
    return "converted"


TEST_STAGES = (
    Stage("import", S.PENDING, S.UPLOADING, S.UPLOADED, S.ERROR, "tests.gui.window_support:import_npy"),
    Stage("convert", S.UPLOADED, S.CONVERTING, S.CONVERTED, S.CONVERT_ERROR, "tests.gui.window_support:convert_npy"),
)


def phantom(shape=(24, 40, 48), dtype=np.uint16) -> np.ndarray:
    """A small scan-like volume: a bright ball in a darker matrix, with noise."""
    z, y, x = np.indices(shape, dtype=np.float32)
    centre = [s / 2 for s in shape]
    r = np.sqrt(sum(((axis - c) / size) ** 2 for axis, c, size in zip((z, y, x), centre, shape)))
    rng = np.random.default_rng(0)
    data = 800 + 2000 * (r < 0.3) + rng.normal(0, 60, shape)
    return np.clip(data, 0, None).astype(dtype)


def npy_source(folder: Path, name: str = "scan.npy", shape=(24, 40, 48)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    np.save(path, phantom(shape))
    return path


def make_window(qtbot, store, stages=TEST_STAGES):
    from app.gui.main_window import MainWindow
    from app.gui.pages.base import AppContext
    from app.gui.worker import JobScheduler

    scheduler = JobScheduler(store, stages=stages)
    window = MainWindow(AppContext(store, scheduler))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=3000)  # keyboard shortcuts need it
    return window


def stop_window(qtbot, window) -> None:
    """Cancel what runs, wait for the workers, close without the question."""
    scheduler = window.scheduler
    scheduler.cancel_all()
    scheduler.wait(10000)
    qtbot.waitUntil(lambda: not scheduler.running_jobs(), timeout=10000)
    window.close()


@pytest.fixture
def window(qtbot, store):
    STEP_SECONDS["value"] = 0.0
    win = make_window(qtbot, store)
    yield win
    stop_window(qtbot, win)


def wait_status(qtbot, store, job_id: int, status: S, timeout: int = 20000) -> None:
    qtbot.waitUntil(lambda: store.get(job_id).status == status.value, timeout=timeout)


def uploaded_job(store, source: Path, name: str = "scan"):
    """A job whose import is done (waiting for conversion)."""
    job = store.create_job(name, [str(source)])
    store.transition(job.id, S.UPLOADING)
    store.transition(job.id, S.UPLOADED)
    return job


from app.gui.pages.base import JobPage  # noqa: E402 - after the Qt-free helpers


class RecordingPage(JobPage):
    """A page that records the hooks the window calls."""

    title = "Recorder"
    calls: list[tuple] = []

    def job_changed(self, job_id):
        RecordingPage.calls.append(("job", job_id))

    def page_shown(self):
        RecordingPage.calls.append(("shown",))

    def page_hidden(self):
        RecordingPage.calls.append(("hidden",))

    def shutdown(self):
        RecordingPage.calls.append(("shutdown",))


class FailingPage(JobPage):
    """A page whose constructor fails, like a page with a missing dependency."""

    title = "Broken"

    def __init__(self, app, parent=None):
        raise ImportError("no module named 'fancy_viewer'")
