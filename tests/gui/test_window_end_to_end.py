"""The window with the app's own import and conversion: real scans in, converted jobs out."""

from __future__ import annotations

import time

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QDialogButtonBox

from app.core.statuses import JobStatus as S
from app.gui.dialogs import FILES, FOLDER
from app.gui.job_table import JobTableModel
from app.runner import STAGES
from tests.gui.window_support import make_window, stop_window, wait_status

pytestmark = pytest.mark.gui

pytest.importorskip("app.stages.ingest", reason="the import and conversion stage is not there yet")


@pytest.fixture
def real_window(qtbot, store):
    win = make_window(qtbot, store, stages=STAGES)
    yield win
    stop_window(qtbot, win)


def test_real_tiff_through_the_dialog_ends_converted_with_a_preview(qtbot, real_window, store, shared_data):
    shell = shared_data / "microct" / "shell_225x128x128.tif"
    window = real_window
    window.new_action.trigger()
    dialog = window.active_dialog
    dialog.set_sources([str(shell)], FILES)
    assert dialog.name_edit.text() == "shell_225x128x128"
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    job_id = window.current_job_id()
    seen = []
    window.scheduler.status_changed.connect(lambda j, old, new: seen.append(new))
    wait_status(qtbot, store, job_id, S.CONVERTED, timeout=60000)
    qtbot.waitUntil(lambda: "converted" in seen)
    assert seen[-1] == "converted" and "converting" in seen
    job = store.get(job_id)
    assert job.shape == [225, 128, 128] and job.dtype == "uint8" and job.unit == "um"
    row = window.model.row_of(job_id)
    assert window.model.index(row, JobTableModel.SHAPE).data() == "225 × 128 × 128"
    qtbot.waitUntil(window.pages["Overview"].has_preview, timeout=15000)


def test_empty_folder_ends_in_error_named_in_the_window(qtbot, real_window, store, tmp_path):
    folder = tmp_path / "nothing here"
    folder.mkdir()
    (folder / "notes.txt").write_text("no images")
    window = real_window
    window.new_job([str(folder)])
    dialog = window.active_dialog
    assert dialog.kind == FOLDER
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    job_id = window.current_job_id()
    qtbot.waitUntil(lambda: store.get(job_id).status in (S.ERROR.value, S.CONVERT_ERROR.value), timeout=30000)
    overview = window.pages["Overview"]
    qtbot.waitUntil(overview.error_label.isVisible)
    assert str(folder) in overview.error_label.text()
    row = window.model.row_of(job_id)
    qtbot.waitUntil(lambda: window.model.index(row, JobTableModel.STATUS).data() in ("Error", "Convert error"))
    assert window.model.index(row, JobTableModel.STATUS).data(Qt.ItemDataRole.ToolTipRole)


def test_open_sample_creates_and_converts_the_sample(qtbot, store, monkeypatch):
    # The window and its Overview only: other pages answer for their own responsiveness.
    monkeypatch.setattr("app.gui.main_window.PAGES", ["app.gui.pages.overview:OverviewPage"])
    window = make_window(qtbot, store, stages=STAGES)
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(20)
    window.sample_action.trigger()
    qtbot.waitUntil(lambda: len(store.list_jobs()) == 1, timeout=60000)
    job_id = store.list_jobs()[0].id
    wait_status(qtbot, store, job_id, S.CONVERTED, timeout=60000)
    timer.stop()
    # The window kept handling events while the sample was made and converted.
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert len(ticks) > 10 and max(gaps) < 0.5, f"the UI thread stalled for {max(gaps):.2f} s"
    assert window.current_job_id() == job_id
    job = store.get(job_id)
    assert job.dtype == "uint16" and min(job.shape) >= 128
    qtbot.waitUntil(window.pages["Overview"].has_preview, timeout=15000)
    stop_window(qtbot, window)


def test_run_gui_with_sample_converts_it_then_closes(qtbot, workspace):
    from PySide6.QtWidgets import QApplication

    from app.gui.main import run_gui
    from app.gui.main_window import MainWindow
    from app.store.jobs import JobStore

    watcher = JobStore(workspace)
    state = {"statuses": []}
    deadline = time.monotonic() + 90

    def poll():
        jobs = watcher.list_jobs()
        windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        state["statuses"] = [j.status for j in jobs]
        done = jobs and jobs[0].status == S.CONVERTED.value
        if windows and time.monotonic() > deadline:
            windows[0].scheduler.cancel_all()  # give up, without a question box
        if windows and (done or time.monotonic() > deadline) and not windows[0].scheduler.running_jobs():
            windows[0].close()
            return
        QTimer.singleShot(100, poll)

    QTimer.singleShot(100, poll)
    assert run_gui(str(workspace), with_sample=True) == 0
    assert state["statuses"] == [S.CONVERTED.value]
    watcher.close()
