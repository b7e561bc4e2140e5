"""The main window in a real Qt session: jobs created, listed, renamed, deleted, cancelled."""

from __future__ import annotations

import os

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QAction, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QDialogButtonBox, QMessageBox

from app.core.statuses import JobStatus as S
from app.gui.dialogs import FILES, FOLDER, NewJobDialog, RenameDialog
from app.gui.job_table import JobTableModel
from tests.gui.window_support import (  # noqa: F401 - fixtures
    STEP_SECONDS,
    RecordingPage,
    make_window,
    npy_source,
    stop_window,
    uploaded_job,
    wait_status,
    window,
)

pytestmark = pytest.mark.gui


def cell(window, job_id, column):
    row = window.model.row_of(job_id)
    return window.model.index(row, column).data()


def click_ok(dialog):
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()


def test_new_job_through_the_dialog_converts_and_shows(qtbot, window, store, tmp_path):
    source = npy_source(tmp_path / "scans", "ammonite_07.npy")
    qtbot.keyClick(window, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    dialog = window.active_dialog
    assert isinstance(dialog, NewJobDialog) and dialog.isVisible()
    dialog.set_kind(FILES)
    dialog.set_sources([str(source)], FILES)
    assert dialog.name_edit.text().startswith("ammonite_07")
    dialog.name_edit.setText("Ammonite 7")
    dialog.spacing_box.setChecked(True)
    for spin, value in zip(dialog.spacing_spins, (2.0, 0.5, 0.5)):
        spin.setValue(value)
    dialog.unit_combo.setCurrentIndex(dialog.unit_combo.findData("um"))
    click_ok(dialog)

    job = store.list_jobs()[0]
    assert job.name == "Ammonite 7"
    assert job.sources == [str(source)]
    assert job.spacing == [2.0, 0.5, 0.5] and job.unit == "um"
    assert window.current_job_id() == job.id
    wait_status(qtbot, store, job.id, S.CONVERTED)
    qtbot.waitUntil(lambda: cell(window, job.id, JobTableModel.STATUS) == "Converted")
    assert cell(window, job.id, JobTableModel.SHAPE) == "24 × 40 × 48"
    assert cell(window, job.id, JobTableModel.DTYPE) == "uint16"
    assert cell(window, job.id, JobTableModel.SPACING) == "2 × 0.5 × 0.5 µm"
    overview = window.pages["Overview"]
    qtbot.waitUntil(overview.has_preview, timeout=10000)


def test_table_lists_newest_first_and_follows_status_changes(qtbot, window, store, tmp_path):
    first = store.create_job("first", [])
    second = store.create_job("second", [])
    window.refresh_jobs()
    assert [window.model.job_id_at(r) for r in range(2)] == [second.id, first.id]
    old = store.transition(first.id, S.UPLOADING)
    store.set_progress(first.id, 0.25, "listing")
    window.scheduler.status_changed.emit(first.id, old.value, S.UPLOADING.value)
    assert cell(window, first.id, JobTableModel.STATUS) == "Uploading"
    assert cell(window, first.id, JobTableModel.PROGRESS) == "25%"
    window.scheduler.progress.emit(first.id, 0.4, "reading slice 40")
    assert cell(window, first.id, JobTableModel.PROGRESS) == "40%"
    index = window.model.index(window.model.row_of(first.id), JobTableModel.PROGRESS)
    assert "reading slice 40" in index.data(Qt.ItemDataRole.ToolTipRole)
    window.job_view.viewport().grab()  # the progress-bar delegate paints
    old = store.transition(first.id, S.ERROR, "disk went away")
    window.scheduler.status_changed.emit(first.id, old.value, S.ERROR.value)
    assert cell(window, first.id, JobTableModel.STATUS) == "Error"
    assert cell(window, first.id, JobTableModel.PROGRESS) == ""
    tip = window.model.index(window.model.row_of(first.id), JobTableModel.STATUS).data(Qt.ItemDataRole.ToolTipRole)
    assert tip == "disk went away"


def test_rename_with_f2(qtbot, window, store):
    job = store.create_job("old name", [])
    window.refresh_jobs()
    window.select_job(job.id)
    window.job_view.setFocus()
    qtbot.keyClick(window.job_view, Qt.Key.Key_F2)
    dialog = window.active_dialog
    assert isinstance(dialog, RenameDialog)
    dialog.name_edit.setText("   ")
    assert not dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).isEnabled()
    dialog.name_edit.setText("Trilobite")
    click_ok(dialog)
    assert store.get(job.id).name == "Trilobite"
    assert cell(window, job.id, JobTableModel.NAME) == "Trilobite"
    assert window.pages["Overview"].name_label.text() == "Trilobite"


def test_delete_asks_then_removes_the_files(qtbot, window, store):
    keep = store.create_job("keep", [])
    doomed = store.create_job("doomed", [])
    folder = store.workspace.job_dir(doomed.id)
    (folder / "source").mkdir()
    (folder / "source" / "slice.tif").write_bytes(b"x")
    window.refresh_jobs()
    window.select_job(doomed.id)

    box = window.delete_job()
    assert isinstance(box, QMessageBox) and "doomed" in box.text()
    box.button(QMessageBox.StandardButton.No).click()
    assert store.get(doomed.id) and folder.exists()

    window.job_view.setFocus()
    qtbot.keyClick(window.job_view, Qt.Key.Key_Delete)
    box = window.active_dialog
    assert isinstance(box, QMessageBox)
    box.button(QMessageBox.StandardButton.Yes).click()
    assert [j.id for j in store.list_jobs()] == [keep.id]
    assert not folder.exists()
    assert window.model.row_of(doomed.id) is None
    assert window.current_job_id() == keep.id


def test_cancel_a_running_conversion(qtbot, window, store, tmp_path):
    STEP_SECONDS["value"] = 0.2
    other = store.create_job("other", [])
    job = uploaded_job(store, npy_source(tmp_path))
    window.refresh_jobs()
    window.select_job(job.id)
    window.scheduler.submit(job.id)
    wait_status(qtbot, store, job.id, S.CONVERTING)
    qtbot.waitUntil(lambda: window.cancel_action.isEnabled())
    qtbot.waitUntil(lambda: cell(window, job.id, JobTableModel.PROGRESS) not in ("", "0%"), timeout=5000)
    assert window.pages["Overview"].progress_widget.isVisible()
    assert window.delete_job() is None  # a running job is not deleted under the worker's feet
    assert "cancel it first" in window.statusBar().currentMessage()
    window.job_view.setFocus()
    qtbot.keyClick(window.job_view, Qt.Key.Key_Escape)
    wait_status(qtbot, store, job.id, S.UPLOADED, timeout=5000)
    qtbot.waitUntil(lambda: not window.scheduler.is_running(job.id))
    assert store.timeline(job.id)[-1].message == "convert cancelled"
    assert not store.workspace.volume_path(job.id).exists()
    assert store.get(other.id).status == S.PENDING.value  # nothing else touched
    qtbot.waitUntil(lambda: cell(window, job.id, JobTableModel.STATUS) == "Uploaded")


def test_bad_input_shows_the_error_and_retry_works(qtbot, window, store, tmp_path):
    bad = tmp_path / "broken.npy"
    bad.write_bytes(b"not an array")
    job = store.create_job("broken", [str(bad)])
    window.refresh_jobs()
    window.select_job(job.id)
    window.scheduler.submit(job.id)
    wait_status(qtbot, store, job.id, S.ERROR)
    overview = window.pages["Overview"]
    qtbot.waitUntil(lambda: overview.error_label.isVisible())
    assert str(bad) in overview.error_label.text()
    qtbot.waitUntil(window.retry_action.isEnabled)
    npy_source(tmp_path, "broken.npy")  # the user fixes the file
    window.retry_action.trigger()
    wait_status(qtbot, store, job.id, S.CONVERTED)
    qtbot.waitUntil(lambda: not overview.error_label.isVisible())


def test_drop_a_folder_opens_the_dialog_prefilled(qtbot, window, store, tmp_path):
    folder = tmp_path / "Brain cube"
    folder.mkdir()
    (folder / "slice_0001.tif").write_bytes(b"II*\x00")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(folder))])
    enter = QDragEnterEvent(
        QPointF(200, 200), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    event = QDropEvent(
        QPointF(200, 200), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(window, event)
    assert event.isAccepted()
    qtbot.waitUntil(lambda: isinstance(window.active_dialog, NewJobDialog))
    dialog = window.active_dialog
    assert dialog.kind == FOLDER
    assert dialog.sources() == [str(folder)]
    assert dialog.name_edit.text() == "Brain cube"
    dialog.reject()
    assert store.list_jobs() == []


def test_close_while_working_asks_and_cancels(qtbot, store, tmp_path):
    STEP_SECONDS["value"] = 0.2
    win = make_window(qtbot, store)
    job = uploaded_job(store, npy_source(tmp_path))
    win.refresh_jobs()
    win.scheduler.submit(job.id)
    wait_status(qtbot, store, job.id, S.CONVERTING)

    answers = []

    def answer(button):
        box = win.active_dialog
        if box is None:
            QTimer.singleShot(20, lambda: answer(button))
            return
        answers.append(box.text())
        box.button(button).click()

    QTimer.singleShot(50, lambda: answer(QMessageBox.StandardButton.No))
    win.close()
    assert win.isVisible() and answers and "Quit anyway" in answers[0]
    assert win.scheduler.is_running(job.id)

    QTimer.singleShot(50, lambda: answer(QMessageBox.StandardButton.Yes))
    win.close()
    assert not win.isVisible()
    qtbot.waitUntil(lambda: store.get(job.id).status == S.UPLOADED.value, timeout=5000)
    STEP_SECONDS["value"] = 0.0


def test_public_api_pages_and_shutdown(qtbot, store, monkeypatch):
    monkeypatch.setattr(
        "app.gui.main_window.PAGES",
        [
            "app.gui.pages.overview:OverviewPage",
            "tests.gui.window_support:RecordingPage",
            "tests.gui.window_support:FailingPage",
        ],
    )
    RecordingPage.calls.clear()
    job = store.create_job("one", [])
    win = make_window(qtbot, store)
    assert list(win.pages) == ["Overview", "Recorder", "Failing"]
    assert "fancy_viewer" in win.pages["Failing"].findChildren(type(win.activity_label))[0].text()
    assert win.current_job_id() == job.id
    assert ("job", job.id) in RecordingPage.calls
    before = len(RecordingPage.calls)
    store.create_job("two", [])
    win.refresh_jobs()  # a new row resets the table; the selected job's pages are left alone
    qtbot.wait(20)
    assert win.current_job_id() == job.id
    assert RecordingPage.calls[before:] == []
    assert win.job_view.selectionModel().currentIndex().row() == win.model.row_of(job.id)
    win.show_page("Recorder")
    win.show_page("Overview")
    assert ("shown",) in RecordingPage.calls and ("hidden",) in RecordingPage.calls
    fired = []
    action = QAction("Measure", win)
    action.triggered.connect(lambda: fired.append(1))
    win.add_menu_action("Tools", action)
    assert action in win.menus["tools"].actions()
    titles = [a.text() for a in win.menuBar().actions()]
    assert titles.index("Tools") < titles.index("&Help")
    action.trigger()
    assert fired == [1]
    win.status_message("hello from a page")
    assert win.statusBar().currentMessage() == "hello from a page"
    win.select_job(None)
    assert win.current_job_id() is None
    stop_window(qtbot, win)
    assert RecordingPage.calls[-1] == ("shutdown",)


def test_a_crashed_conversion_runs_again_on_start(qtbot, store, tmp_path):
    job = uploaded_job(store, npy_source(tmp_path))
    store.transition(job.id, S.CONVERTING, owner_pid=2**22 + 12345)  # a process that is gone
    win = make_window(qtbot, store)
    started = win.scheduler.start_queued()
    assert started == [job.id]
    wait_status(qtbot, store, job.id, S.CONVERTED)
    messages = [e.message for e in store.timeline(job.id)]
    assert any("interrupted" in m for m in messages)
    stop_window(qtbot, win)


def test_welcome_shows_while_the_workspace_is_empty(qtbot, window, store):
    assert window.right_stack.currentWidget() is window.welcome
    job = store.create_job("first", [])
    window.refresh_jobs()
    assert window.right_stack.currentWidget() is window.tabs
    assert window.current_job_id() == job.id


def test_run_gui_opens_and_closes(qtbot, workspace, monkeypatch):
    from app.gui.main import run_gui
    from app.gui.main_window import MainWindow

    seen = []

    def close_windows():
        for widget in QApplication.topLevelWidgets():
            if isinstance(widget, MainWindow) and widget.isVisible():
                seen.append(widget.windowTitle())
                widget.close()

    QTimer.singleShot(300, close_windows)
    assert run_gui(str(workspace)) == 0
    assert len(seen) == 1 and seen[0].startswith("Strata")
    assert (workspace / "strata.db").exists()
    assert not QApplication.windowIcon().isNull()
    assert os.environ.get("STRATA_HOME") == str(workspace)
